"""phaser predictor: fit the output-length predictor offline and evaluate it.

    phaser predictor fit --workload paper-mix -n 5000 --out models/len.json
    phaser predictor eval models/len.json --workload paper-mix -n 2000 --seed 1
    phaser predictor fit --workload azure-conv -n 10000 --out conv.json
    phaser predictor eval conv.json --workload azure-conv -n 9366 --skip 10000
    phaser predictor eval conv.json      # the fitted workload, held out (here: skip the 10,000 fitted)

All modelling is ``phaser.predictor`` (``LengthPredictor.fit``/``save``/``load``
and ``evaluate``); this module only loads workloads and prints.

Decisions where the issue is silent:

* Held-out by default: ``fit`` uses seed 0, ``eval`` seed 1, so on a synthetic
  workload eval draws fresh requests. A trace replay has no randomness (seeds
  do not change it), so hold out with ``--skip`` (eval the requests after the
  ones fitted on); without ``--workload``/``--skip``, eval uses the fitted
  workload and, for a replay, skips the fitted requests. ``eval`` says so
  when the evaluated slice overlaps the fitted one (provenance is in the
  file's ``meta``).
* The baseline is the global-mean predictor *of the same training data* (the
  file's own mean), evaluated by the same ``evaluate`` function, so both rows
  of the table are computed identically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from phaser.errors import PhaserError

BUCKET_NAMES = ("0-256", "256-2048", ">=2048")


def _requests(workload: str, n: int, seed: int, skip: int) -> list:
    from load_generator.registry import load_workload

    if n < 1 or skip < 0:
        raise PhaserError(f"-n must be >= 1 and --skip >= 0 (got -n {n}, --skip {skip})")
    w = load_workload(workload, n=n + skip, seed=seed)
    reqs = list(getattr(w, "requests", w))[skip:]
    if not reqs:
        raise PhaserError(f"workload {workload!r} has no requests after skipping {skip}")
    return reqs


def _is_replay(workload: str) -> bool:
    """A trace replay (built-in trace or a file): seeds do not change it."""
    from load_generator.registry import TRACE_FILES

    return workload in TRACE_FILES or bool(Path(workload.partition("?")[0]).suffix)


def _overlaps(meta: dict, workload: str, n: int, seed: int, skip: int) -> bool:
    """Does the evaluated slice contain requests the model was fitted on?"""
    if meta.get("workload") != workload:
        return False
    if meta.get("seed") != seed and not _is_replay(workload):
        return False
    a0, a1 = int(meta.get("skip", 0)), int(meta.get("skip", 0)) + int(meta.get("n", 0))
    return skip < a1 and a0 < skip + n


def register(app: typer.Typer) -> None:
    pred_app = typer.Typer(help="Fit and evaluate the output-length predictor.", no_args_is_help=True)
    app.add_typer(pred_app, name="predictor")

    @pred_app.command("fit")
    def fit(
        workload: str = typer.Option(..., "--workload", "-w", envvar="PHASER_PREDICTOR_WORKLOAD",
                                     help="Workload name or file to learn from (its true output lengths)."),
        n: int = typer.Option(5000, "-n", "--requests", envvar="PHASER_PREDICTOR_REQUESTS",
                              help="Number of requests to fit on."),
        out: Path = typer.Option(..., "--out", "-o", envvar="PHASER_PREDICTOR_PATH",
                                 help="Where to write the predictor (JSON)."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="Seed of a synthetic workload."),
        skip: int = typer.Option(0, "--skip", help="Skip the first K requests of the workload."),
    ) -> None:
        """Fit the predictor offline on a workload and save it."""
        from rich.console import Console

        from phaser.predictor import LengthPredictor

        reqs = _requests(workload, n, seed, skip)
        p = LengthPredictor().fit(reqs)
        if p.n_samples == 0:
            raise PhaserError(f"workload {workload!r} carries no output lengths to learn from")
        p.meta = {"workload": workload, "n": len(reqs), "seed": seed, "skip": skip}
        out.parent.mkdir(parents=True, exist_ok=True)
        p.save(out)
        Console().print(f"fitted on {p.n_samples} requests of {workload} (global mean {p.global_mean:.1f} tokens, "
                        f"model version {p.model_version}) -> {out}")

    @pred_app.command("eval")
    def eval_(
        path: Path = typer.Argument(..., help="Predictor file written by 'phaser predictor fit'."),
        workload: Optional[str] = typer.Option(None, "--workload", "-w", envvar="PHASER_PREDICTOR_WORKLOAD",
                                               help="Workload name or file to evaluate on (default: the one the "
                                                    "predictor was fitted on, held out)."),
        n: int = typer.Option(2000, "-n", "--requests", envvar="PHASER_PREDICTOR_REQUESTS",
                              help="Number of requests to evaluate on."),
        seed: int = typer.Option(1, "--seed", envvar="PHASER_SEED",
                                 help="Seed of a synthetic workload (fit's default is 0, so 1 is held out)."),
        skip: Optional[int] = typer.Option(None, "--skip", help="Skip the first K requests (default 0; for the "
                                           "trace replay the predictor was fitted on: the fitted requests)."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON to PATH."),
    ) -> None:
        """Accuracy per decode bucket and MAE, against the global-mean predictor."""
        from rich.console import Console
        from rich.table import Table

        from phaser.predictor import LengthPredictor, MeanPredictor, evaluate

        p = LengthPredictor.load(path)
        if workload is None:
            workload = p.meta.get("workload")
            if not workload:
                raise PhaserError(f"{path} does not record its training workload: give --workload")
        if skip is None:
            skip = 0
            if _is_replay(workload) and p.meta.get("workload") == workload:  # hold out what fit saw
                skip = int(p.meta.get("skip", 0)) + int(p.meta.get("n", 0))
        reqs = _requests(workload, n, seed, skip)
        rep = evaluate(p, reqs)
        base = evaluate(MeanPredictor(p.global_mean), reqs)
        console = Console()
        t = Table(title=f"{path.name} on {workload} ({rep['n']} requests, seed {seed}, skip {skip})",
                  header_style="bold")
        t.add_column("predictor")
        for b, c in zip(BUCKET_NAMES, rep["bucket_counts"]):
            t.add_column(f"recall {b}\n(n={c})", justify="right")
        t.add_column("bucket acc.", justify="right")
        t.add_column("MAE tokens", justify="right")

        def fmt(x):
            return "-" if x is None else f"{x:.3f}"

        for name, r in ((f"{p.name} v{p.model_version}", rep), (f"global mean ({p.global_mean:.0f})", base)):
            t.add_row(name, *(fmt(x) for x in r["bucket_recall"]), fmt(r["bucket_accuracy"]), f"{r['mae']:.1f}")
        console.print(t)
        gain = 100.0 * (base["mae"] - rep["mae"]) / base["mae"] if base["mae"] > 0 else 0.0
        console.print(f"MAE {rep['mae']:.1f} vs {base['mae']:.1f} tokens for the global mean ({gain:+.1f}%)")
        if _overlaps(p.meta, workload, len(reqs), seed, skip):
            console.print("note: these requests overlap the ones the predictor was fitted on (in-sample); "
                          "use another --seed, or --skip for a trace replay")
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({"predictor": rep, "global_mean": base, "meta": p.meta,
                                             "workload": workload, "seed": seed, "skip": skip}, indent=1))
