"""phaser calibrate: probe a real engine and write a simulator profile of it."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate(
        endpoint: str = typer.Option(..., "--endpoint", envvar="PHASER_ENDPOINT", help="Base URL of the engine's OpenAI-compatible API."),
        out: Path = typer.Option(..., "--out", help="Profile file to write (JSON; every --profile / --profile-file accepts it)."),
        name: str = typer.Option("", "--name", help="Profile name (default: calibrated-<engine>-<model>)."),
        max_seqs: int = typer.Option(0, "--max-seqs", min=0, help="Concurrent sequences of the engine (0: ask its /slots)."),
        ctx_per_seq: int = typer.Option(0, "--ctx-per-seq", min=0, help="Context tokens per sequence (0: ask the engine)."),
        batch_tokens: int = typer.Option(2048, "--batch-tokens", min=16,
                                         help="Tokens the engine puts in one iteration (llama.cpp's n_batch, vLLM's max_num_batched_tokens)."),
        reps: int = typer.Option(2, "--reps", min=1, help="Repetitions of every probe."),
        max_prompt: int = typer.Option(2048, "--max-prompt", min=32, help="Longest prompt probed (tokens)."),
        api_key: str = typer.Option("", "--api-key", envvar="PHASER_API_KEY", show_default=False, help="Bearer token (never logged)."),
    ):
        """Send a designed set of requests (prefills of growing size, decode batches of 1..slots),
        fit the simulator's iteration-time model, print the fit error per term, write the profile."""
        from services.calibrate import CalibrateConfig, run_calibrate

        from phaser.cli._stack import split_endpoints

        url = split_endpoints([endpoint])[0]
        prof = run_calibrate(CalibrateConfig(url, str(out), name=name, max_seqs=max_seqs or None, ctx_per_seq=ctx_per_seq or None,
                                             batch_tokens=batch_tokens, reps=reps, api_key=api_key or None,
                                             max_prompt=max_prompt),
                             log=lambda m: typer.echo(m, err=True))
        typer.echo(f"wrote {out} (profile {prof['name']}; fit MAPE {100 * prof['fit']['mape']['all']:.1f} %)")
