"""phaser worker: host instances fed by their `assignments` partitions: simulated
GPUs (``--backend sim``) or real engines over their OpenAI-compatible API
(``--backend openai --endpoint URL`` once per instance)."""

from __future__ import annotations

import os

import typer

from phaser.cli._common import BootstrapOpt, MetricsPortOpt, parse_instances
from phaser.cli._stack import (ApiKeyOpt, BackendOpt, EndpointOpt, MaxConcurrencyOpt, ProfileOpt, TimeScaleOpt, TopicPrefixOpt,
                               split_endpoints)
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
        backend: str = BackendOpt,
        endpoint: list[str] = EndpointOpt,
        api_key: str = ApiKeyOpt,
        max_concurrency: int = MaxConcurrencyOpt,
        start_deadline_s: float = typer.Option(60.0, "--start-deadline-s", envvar="PHASER_START_DEADLINE_S", min=0.0,
                                               help="openai backend: how long to wait for every engine to answer /health at start."),
        metrics_port: int | None = MetricsPortOpt,
    ):
        """Run instances until Ctrl-C or SIGTERM (openai backend: use --time-scale 1)."""
        from services.backends.openai import OpenAIConfig
        from services.kafka import Topics
        from services.worker import main

        idx = parse_instances(instances)
        endpoints = split_endpoints(endpoint)
        if backend == "openai" and time_scale == TimeScaleOpt.default and "PHASER_TIME_SCALE" not in os.environ:
            time_scale = 1.0  # real engines run in real time
        main(bootstrap, idx, profile, time_scale, chunked_prefill, heartbeat_s, Topics(topic_prefix), partitions or None,
             backend=backend, endpoints=endpoints, openai_cfg=OpenAIConfig(max_concurrency=max_concurrency, api_key=api_key or None),
             start_deadline_s=start_deadline_s, metrics_port=metrics_port)
