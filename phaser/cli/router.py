"""phaser router: route `requests` to instances with a policy, publish `assignments`."""

from __future__ import annotations

import typer

from phaser.cli._common import BootstrapOpt
from phaser.cli._stack import ProfileOpt, TimeScaleOpt, TopicPrefixOpt


def register(app: typer.Typer) -> None:
    @app.command("router")
    def router(
        policy: str = typer.Option("round-robin", "--policy", envvar="PHASER_POLICY", help="Routing policy name (see `phaser bench --help`)."),
        instances: int = typer.Option(4, "--instances", envvar="PHASER_INSTANCES", min=1, help="Number of instances to route to (0..N-1)."),
        profile: str = ProfileOpt,
        predictor: str = typer.Option("online", "--predictor", envvar="PHASER_PREDICTOR",
                                       help="Output-length predictor: 'online' (learns from completions), 'mean', or a saved predictor .json."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="Seed of randomized policies."),
        time_scale: float = TimeScaleOpt,
        topic_prefix: str = TopicPrefixOpt,
        bootstrap: str = BootstrapOpt,
    ):
        """Run the router until Ctrl-C or SIGTERM. --profile may list one profile per instance (comma-separated)."""
        from services.kafka import Topics
        from services.router import main

        main(bootstrap, policy, instances, [p.strip() for p in profile.split(",") if p.strip()], time_scale, seed,
             predictor, Topics(topic_prefix))
