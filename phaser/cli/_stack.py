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
    "v100-llama2-7b", "--profile", "--profile-file", envvar="PHASER_PROFILE",
    help="Latency profile of the simulated GPUs (hardware/model), e.g. v100-llama2-7b, a100-llama3-8b, "
         "or a profile file (*.json, what `phaser calibrate` writes).",
)
BackendOpt = typer.Option(
    "sim", "--backend", envvar="PHASER_BACKEND",
    help="What runs the instances: sim (simulated GPUs) or openai (real engines over their OpenAI-compatible API).",
)
EndpointOpt = typer.Option(
    [], "--endpoint", envvar="PHASER_ENDPOINTS",
    help="openai backend: base URL of one engine per instance, in instance order (repeat the flag; "
         "PHASER_ENDPOINTS takes them comma-separated).",
)
ApiKeyOpt = typer.Option(
    "", "--api-key", envvar="PHASER_API_KEY", show_default=False,
    help="openai backend: bearer token sent to the engines (never logged).",
)
MaxConcurrencyOpt = typer.Option(
    8, "--max-concurrency", envvar="PHASER_MAX_CONCURRENCY", min=1,
    help="openai backend: concurrent streams per engine; more wait in the worker.",
)


def split_endpoints(values: list[str]) -> list[str]:
    """Repeated --endpoint flags, or one comma-separated PHASER_ENDPOINTS."""
    from phaser.errors import PhaserError

    out = [u.strip() for v in values for u in v.split(",") if u.strip()]
    for u in out:
        if not u.startswith(("http://", "https://")):
            raise PhaserError(f"--endpoint {u!r} is not an http(s) URL")
    return out
