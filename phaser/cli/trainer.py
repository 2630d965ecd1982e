"""phaser trainer: learn the routing policy online from the stream and publish versions."""

from __future__ import annotations

import typer

from phaser.cli._common import BootstrapOpt, MetricsPortOpt
from phaser.cli._stack import TimeScaleOpt, TopicPrefixOpt


def register(app: typer.Typer) -> None:
    @app.command("trainer")
    def trainer(
        store: str = typer.Option(..., "--store", envvar="PHASER_CHECKPOINTS",
                                  help="Checkpoint store directory: versions are written here (shared with the router)."),
        checkpoint: str | None = typer.Option(None, "--checkpoint", envvar="PHASER_CHECKPOINT",
                                              help="Start from this checkpoint (default: the store's current version, else from scratch)."),
        instances: int = typer.Option(4, "--instances", envvar="PHASER_INSTANCES", min=1, help="Number of instances the router routes to."),
        publish_every_updates: int = typer.Option(500, "--publish-every-updates", envvar="PHASER_PUBLISH_EVERY_UPDATES", min=1,
                                                  help="Publish a new version after this many learner updates..."),
        publish_every_s: float = typer.Option(30.0, "--publish-every-s", envvar="PHASER_PUBLISH_EVERY_S", min=0.1,
                                              help="...or after this many wall seconds with at least one update, whichever first."),
        settle_s: float = typer.Option(60.0, "--settle-s", envvar="PHASER_SETTLE_S", min=0.0,
                                       help="Stack seconds a decision waits for the completions its reward needs."),
        freeze: bool = typer.Option(False, "--freeze", envvar="PHASER_FREEZE", help="Consume and report, but neither learn nor publish."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="Seed of the initial weights (from scratch) and replay sampling."),
        twin: list[str] = typer.Option([], "--twin-profile", envvar="PHASER_TWIN_PROFILE",
                                       help="Learn in a digital twin (phaser.twin) instead of online gradient steps: "
                                            "the profile the router was told, once or per instance (repeatable); "
                                            "the twin fits each instance's real speed from completions."),
        twin_every_s: float = typer.Option(120.0, "--twin-every-s", envvar="PHASER_TWIN_EVERY_S", min=1.0,
                                           help="Wall seconds between twin rounds (fit, train a candidate, judge it)."),
        twin_window: int = typer.Option(2000, "--twin-window", envvar="PHASER_TWIN_WINDOW", min=10,
                                        help="Newest requests the twin replays."),
        time_scale: float = TimeScaleOpt,
        topic_prefix: str = TopicPrefixOpt,
        bootstrap: str = BootstrapOpt,
        metrics_port: int | None = MetricsPortOpt,
    ):
        """Run the online trainer until Ctrl-C or SIGTERM."""
        from policy_trainer.service import main
        from services.kafka import Topics

        main(bootstrap, store, instances, checkpoint, seed, time_scale, Topics(topic_prefix), publish_every_updates,
             publish_every_s, freeze, settle_s, metrics_port=metrics_port, twin_profiles=twin or None,
             twin_every_s=twin_every_s, twin_window=twin_window)
