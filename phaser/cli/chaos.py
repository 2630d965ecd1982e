"""phaser chaos: inject faults into a live stack and count what was lost."""

from __future__ import annotations

from pathlib import Path

import typer

from phaser.cli._common import policy_help, policy_epilog

from phaser.cli._stack import ProfileOpt, TimeScaleOpt


def register(app: typer.Typer) -> None:
    from services.chaos import FAULTS, ChaosConfig

    d = ChaosConfig()

    @app.command("chaos", epilog=policy_epilog())
    def chaos(
        broker: str = typer.Option(d.broker, "--broker", envvar="PHASER_CHAOS_BROKER",
                                   help="Broker chaos starts on loopback: tansu (embedded) or kafka (Apache Kafka; needs Java)."),
        faults: str = typer.Option(",".join(d.faults), "--faults", envvar="PHASER_CHAOS_FAULTS",
                                   help=f"Comma-separated fault schedule, one stack run each: {', '.join(FAULTS)}."),
        requests: int = typer.Option(d.requests, "--requests", envvar="PHASER_REQUESTS", min=10, help="Requests per fault run."),
        workload: str = typer.Option(d.workload, "--workload", envvar="PHASER_WORKLOAD", help="Workload name or file."),
        instances: int = typer.Option(d.instances, "--instances", envvar="PHASER_INSTANCES", min=2,
                                      help="Instances (two workers, half each)."),
        profile: str = ProfileOpt,
        policy: str = typer.Option(d.policy, "--policy", envvar="PHASER_POLICY", help=policy_help()),
        time_scale: float = TimeScaleOpt,
        seed: int = typer.Option(d.seed, "--seed", envvar="PHASER_SEED", help="Seed of the workload."),
        at_s: float = typer.Option(d.at_s, "--at", min=0.0, help="Wall seconds into the load when the fault strikes."),
        down_s: float = typer.Option(d.down_s, "--down-s", min=0.1, help="kill-worker: wall seconds before the worker is restarted."),
        pause_s: float = typer.Option(d.pause_s, "--pause-s", min=0.1, help="broker-pause: wall seconds the broker is stopped."),
        drain_timeout: float = typer.Option(d.drain_timeout_s, "--drain-timeout", min=1.0,
                                            help="Wall seconds without a completion, after load and fault, before the rest counts as lost."),
        engine: str = typer.Option("", "--engine", envvar="PHASER_ENGINE",
                                   help="Run the instances on local real engines (llama.cpp); enables the engine-down fault "
                                        "and defaults to --faults engine-down, --time-scale 1 and a small workload."),
        rate: float = typer.Option(0.0, "--rate", envvar="PHASER_RATE", min=0.0,
                                   help="Mean arrival rate (0 = the workload's own; 2 req/s with --engine)."),
        json_path: Path = typer.Option(None, "--json", help="Also write the rows as JSON to this path."),
    ):
        """Run the stack once per fault, apply it, print requested / completed / failed / rejected /
        lost / duplicates / dead letters and recovery times per fault. Exit 1 if any request was lost,
        duplicated or failed (broker-restart on tansu excepted: tansu keeps nothing)."""
        import json

        from rich.console import Console

        from services.chaos import render, run_chaos

        import os

        if engine:  # real engines: real time, a workload they serve in a minute, the engine fault
            from phaser.cli.up import REAL_ENGINE_WORKLOAD

            if faults == ",".join(d.faults) and "PHASER_CHAOS_FAULTS" not in os.environ:
                faults = "engine-down"
            if time_scale == TimeScaleOpt.default and "PHASER_TIME_SCALE" not in os.environ:
                time_scale = 1.0
            if workload == d.workload and "PHASER_WORKLOAD" not in os.environ:
                workload = REAL_ENGINE_WORKLOAD
            if requests == d.requests and "PHASER_REQUESTS" not in os.environ:
                requests = 100
            rate = rate or 2.0
        cfg = ChaosConfig(broker=broker, faults=tuple(f.strip() for f in faults.split(",") if f.strip()), requests=requests,
                          workload=workload, instances=instances, profile=profile, policy=policy, time_scale=time_scale,
                          seed=seed, at_s=at_s, down_s=down_s, pause_s=pause_s, drain_timeout_s=drain_timeout,
                          engine=engine or None, rate=rate or None)
        con = Console(stderr=True)
        rows = run_chaos(cfg, progress=lambda r: con.print(f"chaos: {r['fault']}: {r}"))
        Console().print(render(rows))
        if json_path is not None:
            json_path.write_text(json.dumps({"config": {k: v for k, v in vars(cfg).items()}, "rows": rows}, indent=2))
        bad = [r for r in rows if (r["lost"] or r["duplicates"] or r["failed"])
               and not (r["fault"] == "broker-restart" and r["broker"] == "tansu")]
        if bad:
            raise typer.Exit(1)
