"""phaser workload: inspect (``stats``) and export (``export``) workloads.

``stats`` prints a rich table (count, duration, rate, CV of inter-arrivals,
token percentiles, per-task shares) and with ``--json PATH`` writes the dict
of ``load_generator.stats.workload_stats``. ``export`` writes any workload
in phaser's simple CSV/JSONL format (which ``load_workload`` reads back).
"""

from __future__ import annotations

from pathlib import Path

import typer

SPEC_HELP = "Workload name (paper-mix, azure-conv, azure-code, sharegpt, arxiv-summarization) or trace file path; options as NAME?cv=3, mixes as a@0.7+b@0.3."


def _opts():
    return dict(
        n=typer.Option(None, "--requests", "-n", envvar="PHASER_REQUESTS", min=1, help="Number of requests (synthetic default 2000; traces: first N)."),
        rate=typer.Option(None, "--rate", envvar="PHASER_RATE", help="Mean arrival rate, req/s (synthetic default 20; traces are retimed to it)."),
        duration=typer.Option(None, "--duration", envvar="PHASER_DURATION", help="Keep only the first DURATION seconds of arrivals."),
        seed=typer.Option(0, "--seed", envvar="PHASER_SEED", help="Random seed for synthetic workloads."),
    )


def _write_json(obj: dict, path: Path) -> None:
    import orjson

    from phaser.errors import PhaserError

    try:
        path.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    except OSError as e:
        raise PhaserError(f"cannot write {str(path)!r}: {e.strerror}") from None


def render_stats(stats: dict, title: str, skipped: dict[str, int]):
    from rich.table import Table

    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("requests", f"{stats['count']:,}")
    t.add_row("duration", f"{stats['duration_s']:,.1f} s")
    t.add_row("mean rate", f"{stats['rate']:,.2f} req/s")
    t.add_row("burstiness (CV of gaps)", f"{stats['cv']:.2f}")
    for key in ("prompt", "output"):
        s = stats[key]
        t.add_row(f"{key} tokens mean / p50 / p90 / p99 / max",
                  f"{s['mean']:.1f} / {s['p50']:.0f} / {s['p90']:.0f} / {s['p99']:.0f} / {s['max']:.0f}")
    t.add_row(f"heavy decode (>= {stats['heavy_decode_tokens']} tok, 5 s on v100)", f"{stats['heavy_decode_share']:.1%}")
    for reason, count in skipped.items():
        t.add_row(f"skipped: {reason}", f"{count:,}")
    tasks = Table(title="tasks", header_style="bold")
    for c in ("task", "share", "prompt mean", "output mean", "heavy decode"):
        tasks.add_column(c, justify="left" if c == "task" else "right")
    for name, v in stats["tasks"].items():
        tasks.add_row(name, f"{v['share']:.1%}", f"{v['prompt_mean']:.1f}", f"{v['output_mean']:.1f}", f"{v['heavy_decode_share']:.1%}")
    return t, tasks


def register(app: typer.Typer) -> None:
    wl = typer.Typer(help="Inspect and export workloads.", no_args_is_help=True)
    app.add_typer(wl, name="workload")
    o = _opts()

    @wl.command("stats")
    def stats(
        spec: str = typer.Argument(..., metavar="NAME|FILE", help=SPEC_HELP),
        n: int | None = o["n"], rate: float | None = o["rate"], duration: float | None = o["duration"], seed: int = o["seed"],
        json_path: Path | None = typer.Option(None, "--json", envvar="PHASER_STATS_JSON", help="Also write the statistics as JSON to PATH."),
    ):
        """Count, duration, rate, burstiness, token percentiles and task shares of a workload."""
        from rich.console import Console

        from load_generator import resolve
        from load_generator.stats import workload_stats

        trace = resolve(spec, n=n, rate=rate, duration_s=duration, seed=seed)
        s = workload_stats(trace.requests)
        s["workload"] = spec
        s["skipped"] = dict(trace.skipped)
        console = Console()
        for table in render_stats(s, f"workload {spec}", trace.skipped):
            console.print(table)
        if json_path is not None:
            _write_json(s, json_path)
            console.print(f"wrote {json_path}")

    @wl.command("export")
    def export(
        spec: str = typer.Argument(..., metavar="NAME|FILE", help=SPEC_HELP),
        out: Path = typer.Option(..., "--out", "-o", help="Output file: .csv for CSV, anything else JSONL (phaser's simple format)."),
        n: int | None = o["n"], rate: float | None = o["rate"], duration: float | None = o["duration"], seed: int = o["seed"],
    ):
        """Write a workload in phaser's simple CSV/JSONL format (arrival_s, prompt_tokens, output_tokens, task, prefix_ids)."""
        from load_generator import load_workload
        from load_generator.readers.simple import write_simple

        reqs = load_workload(spec, n=n, rate=rate, duration_s=duration, seed=seed)
        write_simple(reqs, out)
        typer.echo(f"wrote {len(reqs):,} requests to {out}")
