"""phaser up: broker, router, workers, trainer, monitor and load in one command."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from phaser.cli._common import policy_help, policy_epilog

from phaser.cli._stack import BackendOpt, EndpointOpt, ProfileOpt, TimeScaleOpt, split_endpoints
from services.up import UpConfig

#: defaults with real engines: a workload a 135M model on one CPU core serves in a minute or two
REAL_ENGINE_WORKLOAD = "uniform?prompt=16-256&output=8-64"
REAL_ENGINE_REQUESTS = 50
REAL_ENGINE_RATE = 1.0


def register(app: typer.Typer) -> None:
    d = UpConfig()

    @app.command("up", epilog=policy_epilog())
    def up(
        requests: int = typer.Option(0, "--requests", envvar="PHASER_REQUESTS", min=0,
                                     help="Number of requests to send (0 = 1000; 50 with real engines)."),
        workload: str = typer.Option("", "--workload", envvar="PHASER_WORKLOAD",
                                     help="Workload name or file (see `phaser load --help`); default paper-mix, "
                                          f"with real engines {REAL_ENGINE_WORKLOAD}."),
        rate: float = typer.Option(0.0, "--rate", envvar="PHASER_RATE", min=0.0,
                                   help="Mean arrival rate, requests per stack second (0 = the workload's own; "
                                        f"{REAL_ENGINE_RATE} req/s with real engines)."),
        seed: int = typer.Option(d.seed, "--seed", envvar="PHASER_SEED", help="Seed of the workload and the policy."),
        instances: int = typer.Option(d.instances, "--instances", envvar="PHASER_INSTANCES", min=1, help="Simulated GPU instances."),
        workers: int = typer.Option(0, "--workers", envvar="PHASER_WORKERS", min=0,
                                    help="Worker processes to spread the instances over (0 = one per 16 instances)."),
        profile: str = ProfileOpt,
        policy: str = typer.Option(d.policy, "--policy", envvar="PHASER_POLICY", help=policy_help()),
        predictor: str = typer.Option(d.predictor, "--predictor", envvar="PHASER_PREDICTOR", help="Output-length predictor."),
        chunked_prefill: bool = typer.Option(False, "--chunked-prefill/--no-chunked-prefill", envvar="PHASER_CHUNKED_PREFILL",
                                             help="Chunked prefill in every instance."),
        time_scale: float = TimeScaleOpt,
        bootstrap: str = typer.Option("", "--bootstrap", envvar="PHASER_BOOTSTRAP",
                                      help="Use this Kafka instead of starting the embedded broker."),
        topic_prefix: str = typer.Option(None, "--topic-prefix", envvar="PHASER_TOPIC_PREFIX",
                                         help="Prefix of every topic (default: none on the embedded broker, a unique "
                                              "up-<hex>- with --bootstrap)."),
        heartbeat_s: float = typer.Option(d.heartbeat_s, "--heartbeat-s", envvar="PHASER_HEARTBEAT_S", min=0.01,
                                          help="Stack seconds between two heartbeats of an instance (workers and router)."),
        broker: str = typer.Option("tansu", "--broker", envvar="PHASER_BROKER",
                                   help="Broker to start when there is no --bootstrap: tansu (embedded) or kafka (a real "
                                        "Apache Kafka from Maven Central; needs Java 17; what large stacks need, see README)."),
        port: int = typer.Option(0, "--port", envvar="PHASER_BROKER_PORT", min=0, help="Embedded broker port (0 = a free one)."),
        drain_timeout: float = typer.Option(d.drain_timeout_s, "--drain-timeout", envvar="PHASER_DRAIN_TIMEOUT", min=0.1,
                                            help="Wall seconds without a new completion, after the load, before the rest counts as lost."),
        monitor: bool = typer.Option(True, "--monitor/--no-monitor", envvar="PHASER_MONITOR",
                                     help="Run the monitor (plain lines on stderr)."),
        trainer: bool = typer.Option(True, "--trainer/--no-trainer", envvar="PHASER_TRAINER",
                                     help="Run the online trainer: it learns from the served traffic (any policy) and publishes versions to --checkpoints; with --policy rl the router serves them."),
        checkpoints: str = typer.Option("", "--checkpoints", envvar="PHASER_CHECKPOINTS",
                                        help="The trainer's checkpoint store (default: a temporary folder removed at the end)."),
        checkpoint: str = typer.Option("", "--checkpoint", envvar="PHASER_CHECKPOINT",
                                       help="With --policy rl: seed the store with this checkpoint (default: learn from scratch, round robin serves until a version is promoted)."),
        start_policy: str = typer.Option(d.start_policy, "--start-policy", envvar="PHASER_START_POLICY",
                                         help="With --policy rl: what the router serves until the trainer's first version is promoted."),
        twin: bool = typer.Option(False, "--twin/--no-twin", envvar="PHASER_TWIN",
                                  help="The trainer learns in a digital twin of the cluster (`phaser trainer --twin-profile`, "
                                       "told --profile; it fits what the workers really run) instead of by online gradient steps."),
        twin_every_s: float = typer.Option(d.twin_every_s, "--twin-every-s", envvar="PHASER_TWIN_EVERY_S", min=1.0,
                                           help="With --twin: wall seconds between twin rounds."),
        twin_window: int = typer.Option(d.twin_window, "--twin-window", envvar="PHASER_TWIN_WINDOW", min=10,
                                        help="With --twin: the newest requests the twin replays."),
        worker_profile: str = typer.Option("", "--worker-profile", envvar="PHASER_WORKER_PROFILE",
                                           help="The profile the simulated workers really run (default --profile, which "
                                                "is what the router and the twin are told), e.g. a100-llama3-8b@x1.6."),
        routers: int = typer.Option(d.routers, "--routers", envvar="PHASER_ROUTERS", min=1, max=64,
                                    help="Router replicas: one consumer group on requests (a dead replica's share moves "
                                         "to the others), each keeping every replica's decisions in its view."),
        backend: str = BackendOpt,
        endpoint: list[str] = EndpointOpt,
        engine: str = typer.Option("", "--engine", envvar="PHASER_ENGINE",
                                   help="Start local real engines first and route to them: llama.cpp (llama-server with "
                                        "SmolLM2-135M on the CPU, built and cached on first use; see `phaser engine`)."),
        metrics_port: int = typer.Option(None, "--metrics-port", envvar="PHASER_METRICS_PORT", min=0, max=65535,
                                         help="Prometheus /metrics on every service: 0 = free ports, N = the load "
                                              "generator on N and the children on N+1, N+2, ... (listed at start and in --json)."),
        metrics_sd: Path = typer.Option(None, "--metrics-sd", envvar="PHASER_METRICS_SD",
                                        help="With --metrics-port: write a Prometheus file_sd_configs JSON of the targets here."),
        linger: float = typer.Option(0.0, "--linger", envvar="PHASER_LINGER", min=0.0,
                                     help="Keep the stack up this many wall seconds after the load (to scrape or attach)."),
        load_delay: float = typer.Option(0.0, "--load-delay", envvar="PHASER_LOAD_DELAY", min=0.0,
                                         help="Wall seconds between the stack being ready and the first request "
                                              "(e.g. so a Prometheus scrapes every service before the load)."),
        json_path: Path = typer.Option(None, "--json", help="Also write the summary as JSON to this path."),
        plot: Path = typer.Option(None, "--plot", help="Write a PNG of served mean E2E over time per policy version."),
    ):
        """Run the whole stack, drive the load, print the summary read from `completions`."""
        import json

        from rich.console import Console

        from services.summary import render
        from services.up import run_up

        endpoints = split_endpoints(endpoint)
        real = bool(engine) or backend == "openai"
        if real and time_scale == TimeScaleOpt.default and "PHASER_TIME_SCALE" not in os.environ:
            time_scale = 1.0  # real engines run in real time
        workload = workload or (REAL_ENGINE_WORKLOAD if real else d.workload)
        requests = requests or (REAL_ENGINE_REQUESTS if real else d.requests)
        rate = rate or (REAL_ENGINE_RATE if real else 0.0)
        cfg = UpConfig(requests=requests, workload=workload, rate=rate or None, seed=seed, instances=instances,
                       workers=workers or None, profile=profile, policy=policy, predictor=predictor,
                       chunked_prefill=chunked_prefill, time_scale=time_scale, bootstrap=bootstrap or None,
                       broker=broker, heartbeat_s=heartbeat_s, port=port or None, topic_prefix=topic_prefix, drain_timeout_s=drain_timeout, monitor=monitor, trainer=trainer,
                       checkpoints=checkpoints, checkpoint=checkpoint or None,
                       plot=str(plot) if plot is not None else None, backend=backend, endpoints=tuple(endpoints),
                       engine=engine or None, metrics_port=metrics_port,
                       metrics_sd=str(metrics_sd) if metrics_sd is not None else None, linger_s=linger,
                       load_delay_s=load_delay, start_policy=start_policy, twin=twin, twin_every_s=twin_every_s,
                       twin_window=twin_window, routers=routers,
                       worker_profile=worker_profile or None)
        if metrics_sd is not None and metrics_port is None:
            from phaser.errors import PhaserError

            raise PhaserError("--metrics-sd needs --metrics-port")
        import signal

        def _term(*_):  # SIGTERM stops the stack like Ctrl-C (children reaped in run_up's finally)
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGHUP, _term)  # a closed terminal stops the stack the same way
        summary = run_up(cfg)
        con = Console()
        what = f"{instances} x {engine or 'openai'} engine" if real else f"{instances} x {profile}"
        for t in render(summary, title=f"phaser up: {workload}, {policy}, {what}"):
            con.print(t)
        if json_path is not None:
            json_path.write_text(json.dumps(summary, indent=2))
        if summary.get("interrupted"):  # Ctrl-C / SIGTERM: the partial summary above, and the shell's code
            raise typer.Exit(130)
        if summary["lost"] or summary["duplicates"]:
            raise typer.Exit(1)
