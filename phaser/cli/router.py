"""phaser router: route `requests` to instances with a policy, publish `assignments`."""

from __future__ import annotations

import typer

from phaser.cli._common import BootstrapOpt, MetricsPortOpt, policy_help, policy_epilog
from phaser.cli._stack import ProfileOpt, TimeScaleOpt, TopicPrefixOpt


def register(app: typer.Typer) -> None:
    @app.command("router", epilog=policy_epilog())
    def router(
        policy: str = typer.Option("round-robin", "--policy", envvar="PHASER_POLICY", help=policy_help()),
        instances: int = typer.Option(4, "--instances", envvar="PHASER_INSTANCES", min=1, help="Number of instances to route to (0..N-1)."),
        profile: str = ProfileOpt,
        predictor: str = typer.Option("online", "--predictor", envvar="PHASER_PREDICTOR",
                                       help="Output-length predictor: 'online' (learns from completions), 'mean', or a saved predictor .json."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="Seed of randomized policies."),
        checkpoint: str | None = typer.Option(None, "--checkpoint", envvar="PHASER_CHECKPOINT",
                                              help="RL policies (rl, rl-*): checkpoint directory or root (latest version); default: the checkpoint shipped for the variant."),
        store: str | None = typer.Option(None, "--store", envvar="PHASER_CHECKPOINTS",
                                         help="Checkpoint store: serve its current version and hot-swap versions published on policy-updates (--policy is the fallback until one exists)."),
        canary_share: float = typer.Option(0.2, "--canary-share", envvar="PHASER_CANARY_SHARE", min=0.001, max=1.0,
                                           help="With --store: share of requests a new version serves until the guard promotes or rolls it back."),
        rollback_threshold: float = typer.Option(0.10, "--rollback-threshold", envvar="PHASER_ROLLBACK_THRESHOLD", min=0.0,
                                                 help="With --store: roll a canary back when its mean E2E is worse than the incumbent's by more than this fraction."),
        canary_min_samples: int = typer.Option(100, "--canary-min-samples", envvar="PHASER_CANARY_MIN_SAMPLES", min=1,
                                               help="With --store: requests each side needs before the guard judges."),
        canary_promote_after: int = typer.Option(300, "--canary-promote-after", envvar="PHASER_CANARY_PROMOTE_AFTER", min=1,
                                                 help="With --store: completed canary requests before a promotion."),
        explore: float = typer.Option(0.02, "--explore", envvar="PHASER_EXPLORE", min=0.0, max=0.25,
                                      help="With --store: share of requests routed to a random instance so online learning sees alternatives (max 0.25)."),
        freeze: bool = typer.Option(False, "--freeze", envvar="PHASER_FREEZE",
                                    help="With --store: serve without learning (no exploration, ignore the trainer's new versions)."),
        heartbeat_s: float = typer.Option(0.5, "--heartbeat-s", envvar="PHASER_HEARTBEAT_S", min=0.001,
                                          help="The workers' heartbeat period (stack s); failover waits 10 of them."),
        down_after_s: float = typer.Option(5.0, "--down-after-s", envvar="PHASER_DOWN_AFTER_S", min=0.0,
                                           help="Failover: wall seconds of heartbeat silence (at least; and at least 10 heartbeats) "
                                                "before an instance is down and its requests are re-routed; 0 turns failover off."),
        replica_id: str = typer.Option("", "--replica-id", envvar="PHASER_REPLICA_ID",
                                       help="Run as one replica of a group of routers: the replicas share the requests "
                                            "topic's partitions (a consumer group; a dead replica's move to the others) and "
                                            "each keeps every replica's decisions in its view. Letters, digits, . _ -; "
                                            "'auto': this host's name (a container's, when compose scales the service)"),
        routers: int = typer.Option(1, "--routers", envvar="PHASER_ROUTERS", min=1, max=64,
                                    help="With --replica-id: the group's size (the requests topic gets a partition each)."),
        feature_share: float = typer.Option(1.0, "--feature-share", envvar="PHASER_FEATURE_SHARE", min=0.0, max=1.0,
                                            help="Share of assignments that carry the RL state for the trainer (the same "
                                                 "requests on every replica); 1 = all. At 64 instances the state is 515 "
                                                 "numbers a decision: publish it only as often as training needs."),
        time_scale: float = TimeScaleOpt,
        topic_prefix: str = TopicPrefixOpt,
        bootstrap: str = BootstrapOpt,
        metrics_port: int | None = MetricsPortOpt,
    ):
        """Run the router until Ctrl-C or SIGTERM. --profile may list one profile per instance (comma-separated)."""
        import re

        from phaser.errors import PhaserError
        from services.kafka import Topics
        from services.router import main

        if replica_id == "auto":
            import socket

            replica_id = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "router"
        if replica_id and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", replica_id):
            raise PhaserError(f"--replica-id {replica_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if routers > 1 and not replica_id:
            raise PhaserError("--routers N needs --replica-id (each replica of the group has its own id)")

        swap = None if store is None else dict(
            store=store, canary_share=canary_share, rollback_threshold=rollback_threshold, min_samples=canary_min_samples,
            promote_after=canary_promote_after, explore=explore, freeze=freeze)
        main(bootstrap, policy, instances, [p.strip() for p in profile.split(",") if p.strip()], time_scale, seed,
             predictor, Topics(topic_prefix), swap, {"checkpoint": checkpoint} if checkpoint else None,
             heartbeat_s=heartbeat_s, down_after_wall_s=down_after_s, metrics_port=metrics_port,
             replica_id=replica_id, routers=routers, feature_share=feature_share)
