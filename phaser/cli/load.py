"""phaser load: publish a workload to ``requests`` open-loop on its schedule.

Wraps ``load_generator.publisher.publish`` with a rich progress bar (sent,
achieved vs target rate, lag behind schedule), a final report table and
``--json``. ``--bench-rates 1000,5000,...`` instead measures the highest rate
the publisher holds within 1% of schedule (see ``publisher.publish`` for the
criterion): each rate publishes ``--bench-seconds`` of the paper mix at time
scale 1 (so rates are wall req/s), with a fresh run id. ``--embedded`` starts a
private embedded broker (tansu, schemas enforced) for the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import typer

from phaser.cli._common import BootstrapOpt, MetricsPortOpt
from phaser.cli._stack import TimeScaleOpt, TopicPrefixOpt

REPORT_ROWS = [
    ("requested", "requested", "{:,}"), ("sent (acknowledged)", "sent", "{:,}"), ("failed", "failed", "{:,}"),
    ("refused (dead-lettered)", "refused", "{:,}"), ("duration", "duration_s", "{:.2f} s"),
    ("target rate", "target_rate", "{:,.1f} req/s"), ("achieved rate", "achieved_rate", "{:,.1f} req/s"),
    ("lag p50 / p99 / max", None, None), ("late (> 10 ms)", "late_share", "{:.2%}"),
    ("ack tail", "ack_tail_s", "{:.3f} s"), ("on schedule (within 1%)", "on_schedule", "{}"),
    ("idempotent producer", "idempotent", "{}"),
]


def _fmt(report: dict, key: str | None, fmt: str | None) -> str:
    if key is None:
        return f"{report['p50_lag_s'] * 1e3:.1f} / {report['p99_lag_s'] * 1e3:.1f} / {report['max_lag_s'] * 1e3:.1f} ms"
    v = report.get(key)
    return "-" if v is None else fmt.format(v)


def report_table(report: dict, title: str):
    from rich.table import Table

    t = Table(title=title, header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for label, key, fmt in REPORT_ROWS:
        t.add_row(label, _fmt(report, key, fmt))
    for note in report.get("notes", []):
        t.add_row("note", note)
    return t


class _Bar:
    """Adapts ``publisher.Snapshot``s to a rich progress bar."""

    def __init__(self, console, label: str, total: int, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                 console=console, disable=not enabled, transient=False)
        self.task = self.progress.add_task(label, total=total, info="connecting")

    def __call__(self, s) -> None:
        if s.note:
            self.console.log(s.note)
        info = (f"{s.state} acked {s.acked:,} · {s.achieved_rate:,.0f}/{s.target_rate:,.0f} req/s · "
                f"lag {s.lag_s * 1e3:.0f} ms (max {s.max_lag_s * 1e3:.0f})")
        if s.failed or s.refused:
            info += f" · failed {s.failed} refused {s.refused}"
        if s.stalled_s:
            info += f" · [red]broker not acknowledging for {s.stalled_s:.1f}s[/]"
        self.progress.update(self.task, completed=s.handed, info=info)


@contextlib.contextmanager
def _broker(embedded: bool, bootstrap: str):
    if not embedded:
        yield bootstrap
        return
    from services.broker import EmbeddedBroker, free_port

    with EmbeddedBroker(port=free_port(), schemas=True) as b:
        yield b.bootstrap


async def _publish_with_signals(*args, **kwargs) -> dict:
    from load_generator.publisher import publish
    from services.lifecycle import install_stop_signals

    stop = asyncio.Event()
    install_stop_signals(stop)
    return await publish(*args, stop=stop, **kwargs)


def _write_json(obj, path: Path) -> None:
    from phaser.cli.workload import _write_json as write

    write(obj, path)


def _parse_rates(spec: str) -> list[float]:
    from phaser.errors import PhaserError

    try:
        rates = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        rates = []
    if not rates or any(not r > 0 for r in rates):
        raise PhaserError(f"--bench-rates must be positive numbers separated by commas, e.g. 1000,5000; got {spec!r}")
    return sorted(rates)


def register(app: typer.Typer) -> None:
    @app.command("load")
    def load(
        workload: str = typer.Option("paper-mix", "--workload", "-w", envvar="PHASER_WORKLOAD",
                                     help="Workload name or trace file (see `phaser workload stats --help`)."),
        n: int | None = typer.Option(None, "--requests", "-n", envvar="PHASER_REQUESTS", min=1,
                                     help="Number of requests (synthetic default 2000; traces: first N)."),
        rate: float | None = typer.Option(None, "--rate", envvar="PHASER_RATE",
                                          help="Mean arrival rate in stack req/s (synthetic default 20; traces are retimed)."),
        duration: float | None = typer.Option(None, "--duration", envvar="PHASER_DURATION",
                                              help="Only the first DURATION stack seconds of arrivals."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="Random seed for synthetic workloads."),
        time_scale: float = TimeScaleOpt,
        bootstrap: str = BootstrapOpt,
        topic_prefix: str = TopicPrefixOpt,
        run_id: str | None = typer.Option(None, "--run-id", envvar="PHASER_RUN_ID",
                                          help="Prefix for request ids so runs on one broker never share an id "
                                               "(default: random; '' keeps the workload's ids)."),
        connect_timeout: float = typer.Option(60.0, "--connect-timeout", envvar="PHASER_CONNECT_TIMEOUT",
                                              help="Seconds to keep retrying an unreachable broker."),
        json_path: Path | None = typer.Option(None, "--json", envvar="PHASER_LOAD_JSON", help="Write the report as JSON to PATH."),
        embedded: bool = typer.Option(False, "--embedded", envvar="PHASER_EMBEDDED",
                                      help="Start a private embedded broker for this command (ignores --bootstrap)."),
        bench_rates: str | None = typer.Option(None, "--bench-rates", envvar="PHASER_BENCH_RATES",
                                               help="Benchmark: comma-separated wall req/s; reports the highest held within 1% of schedule."),
        bench_seconds: float = typer.Option(5.0, "--bench-seconds", envvar="PHASER_BENCH_SECONDS",
                                            help="Seconds of load per benchmark rate."),
        show_progress: bool = typer.Option(True, "--progress/--no-progress", envvar="PHASER_PROGRESS",
                                           help="Show the live progress bar."),
        metrics_port: int | None = MetricsPortOpt,
    ):
        """Publish a workload to `requests` open-loop on its schedule and report achieved rate and lag."""
        from rich.console import Console

        from load_generator import load_workload
        from services.kafka import Topics

        console = Console(stderr=True)
        topics = Topics(topic_prefix)
        if bench_rates is not None:
            rates = _parse_rates(bench_rates)
            results = []
            with _broker(embedded, bootstrap) as bs:
                for r in rates:
                    reqs = load_workload("paper-mix", n=max(2, int(r * bench_seconds)), rate=r, seed=seed)
                    bar = _Bar(console, f"{r:,.0f} req/s", len(reqs), show_progress)
                    with bar.progress:
                        rep = asyncio.run(_publish_with_signals(reqs, bs, 1.0, progress=bar, topics=topics,
                                                                run_id=f"bench-{secrets.token_hex(3)}",
                                                                connect_timeout_s=connect_timeout))
                    results.append({"rate": r, **rep})
            held = [x["rate"] for x in results if x["on_schedule"]]
            summary = {"bench_seconds": bench_seconds, "highest_rate_held": max(held) if held else None, "runs": results}
            from rich.table import Table

            t = Table(title="phaser load benchmark (paper-mix, wall req/s)", header_style="bold")
            for c in ("target", "achieved", "lag p99 ms", "lag max ms", "late", "sent", "failed", "held"):
                t.add_column(c, justify="right")
            for x in results:
                t.add_row(f"{x['target_rate']:,.0f}", f"{x['achieved_rate']:,.0f}", f"{x['p99_lag_s'] * 1e3:.1f}",
                          f"{x['max_lag_s'] * 1e3:.1f}", f"{x['late_share']:.1%}", f"{x['sent']:,}",
                          f"{x['failed'] + x['refused']:,}", "yes" if x["on_schedule"] else "no")
            Console().print(t)
            Console().print(f"highest rate held within 1% of schedule: "
                            f"{summary['highest_rate_held'] if held else 'none'} req/s")
            if json_path is not None:
                _write_json(summary, json_path)
            return
        reqs = load_workload(workload, n=n, rate=rate, duration_s=duration, seed=seed)
        rid = secrets.token_hex(3) if run_id is None else (run_id or None)
        from services.metrics import Metrics
        from services.metrics.load import LoadMetrics

        metrics = Metrics("load")
        exported = LoadMetrics(metrics)
        metrics.serve(metrics_port)
        with _broker(embedded, bootstrap) as bs:
            bar = _Bar(console, f"load {workload}", len(reqs), show_progress)

            def progress(snap):
                exported.progress(snap)
                bar(snap)

            with bar.progress:
                rep = asyncio.run(_publish_with_signals(reqs, bs, time_scale, progress=progress, topics=topics, run_id=rid,
                                                        connect_timeout_s=connect_timeout))
        metrics.close()
        rep["workload"] = workload
        Console().print(report_table(rep, f"phaser load {workload} → {rep['topic']} ({bs})"))
        if json_path is not None:
            _write_json(rep, json_path)
        if rep["sent"] < rep["requested"]:
            raise typer.Exit(1)
