"""Options shared by the stack's services (router, worker, monitor, up)."""

from __future__ import annotations

import typer

from services.clock import DEFAULT_TIME_SCALE

TimeScaleOpt = typer.Option(
    DEFAULT_TIME_SCALE, "--time-scale", envvar="PHASER_TIME_SCALE",
    help="Stack-clock speed: simulated GPU seconds per wall second (all services of a run must agree).",
)
TopicPrefixOpt = typer.Option(
    "", "--topic-prefix", envvar="PHASER_TOPIC_PREFIX",
    help="Prefix for every topic and consumer group name, to run several stacks on one broker.",
)
ProfileOpt = typer.Option(
    "v100-llama2-7b", "--profile", envvar="PHASER_PROFILE",
    help="Latency profile of the simulated GPUs (hardware/model), e.g. v100-llama2-7b, a100-llama3-8b.",
)
