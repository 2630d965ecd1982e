"""phaser monitor: topic rates, consumer-group lag and rolling latency percentiles."""

from __future__ import annotations

import typer

from phaser.cli._common import BootstrapOpt, MetricsPortOpt
from phaser.cli._stack import TopicPrefixOpt


def register(app: typer.Typer) -> None:
    @app.command("monitor")
    def monitor(
        interval: float = typer.Option(2.0, "--interval", envvar="PHASER_MONITOR_INTERVAL", min=0.1,
                                       help="Wall seconds between snapshots."),
        duration: float = typer.Option(0.0, "--duration", envvar="PHASER_MONITOR_DURATION", min=0.0,
                                       help="Stop after this many wall seconds (0 = until Ctrl-C)."),
        once: bool = typer.Option(False, "--once", help="Read what is in the topics now, print one snapshot, exit."),
        reconnect_s: float = typer.Option(30.0, "--reconnect-s", envvar="PHASER_MONITOR_RECONNECT_S", min=0.0,
                                          help="How long to keep retrying a broker that went away before exiting (code 2)."),
        as_json: bool = typer.Option(False, "--json", help="Print each snapshot as one JSON object (rates /s, lags, latencies in s)."),
        topic_prefix: str = TopicPrefixOpt,
        bootstrap: str = BootstrapOpt,
        metrics_port: int | None = MetricsPortOpt,
    ):
        """Print a snapshot every --interval seconds (rich table on a terminal, plain lines otherwise)."""
        import asyncio

        from services.kafka import Topics
        from services.monitor import run_monitor
        from services.lifecycle import install_stop_signals

        import logging

        from services.metrics import Metrics

        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the monitor says itself when the broker is gone, once

        metrics = Metrics("monitor")
        metrics.serve(metrics_port)

        async def _run():
            stop = asyncio.Event()
            install_stop_signals(stop)
            await run_monitor(bootstrap, Topics(topic_prefix), interval, duration or None, once, stop=stop,
                              metrics=metrics, as_json=as_json, reconnect_s=reconnect_s)

        asyncio.run(_run())
