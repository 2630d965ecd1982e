"""phaser worker: host simulated GPU instances fed by their `assignments` partitions."""

from __future__ import annotations

import typer

from phaser.cli._common import BootstrapOpt, parse_instances
from phaser.cli._stack import ProfileOpt, TimeScaleOpt, TopicPrefixOpt
from services.worker import DEFAULT_HEARTBEAT_S


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        instances: str = typer.Option("0-3", "--instances", envvar="PHASER_WORKER_INSTANCES",
                                      help="Instance indices hosted by this process, e.g. '0-7' or '0,2,5'."),
        profile: str = ProfileOpt,
        chunked_prefill: bool = typer.Option(False, "--chunked-prefill/--no-chunked-prefill", envvar="PHASER_CHUNKED_PREFILL",
                                             help="Sarathi-style chunked prefill in every hosted instance."),
        heartbeat_s: float = typer.Option(DEFAULT_HEARTBEAT_S, "--heartbeat-s", envvar="PHASER_HEARTBEAT_S",
                                          help="Stack seconds between instance-status heartbeats."),
        partitions: int = typer.Option(0, "--partitions", envvar="PHASER_INSTANCES", min=0,
                                       help="Total instances of the cluster (partitions of `assignments`); 0 = highest hosted index + 1."),
        time_scale: float = TimeScaleOpt,
        topic_prefix: str = TopicPrefixOpt,
        bootstrap: str = BootstrapOpt,
    ):
        """Run simulated instances until Ctrl-C or SIGTERM."""
        from services.kafka import Topics
        from services.worker import main

        idx = parse_instances(instances)
        main(bootstrap, idx, profile, time_scale, chunked_prefill, heartbeat_s, Topics(topic_prefix), partitions or None)
