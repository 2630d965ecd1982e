"""Small helpers shared by subcommands (options that every service takes)."""

from __future__ import annotations

import typer

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

#: ``--bootstrap`` for every service; env PHASER_BOOTSTRAP.
BootstrapOpt = typer.Option(
    DEFAULT_BOOTSTRAP, "--bootstrap", envvar="PHASER_BOOTSTRAP",
    help="Kafka bootstrap servers (host:port[,host:port]).",
)


def parse_instances(spec: str) -> list[int]:
    """'0-3,6' -> [0, 1, 2, 3, 6]; raises PhaserError on nonsense."""
    from phaser.errors import PhaserError

    out: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise PhaserError(f"bad instance list {spec!r}: use e.g. '0-3' or '0,2,5'") from None
    if not out or min(out) < 0:
        raise PhaserError(f"bad instance list {spec!r}: need at least one non-negative index")
    return sorted(set(out))

#: ``--metrics-port`` for every service; env PHASER_METRICS_PORT (services.metrics).
MetricsPortOpt = typer.Option(
    None, "--metrics-port", envvar="PHASER_METRICS_PORT", min=0, max=65535,
    help="Serve Prometheus /metrics on this port (0: a free port, printed at start); off when absent.",
)


def policy_help(what: str = "Routing policy") -> str:
    """``--policy`` help pointing at the list every such command prints below its options."""
    return f"{what} (the known policies are listed at the end of this help)."


def policy_epilog() -> str:
    """Every registered policy, full width at the end of a command's help (option cells truncate)."""
    from phaser.policies.base import available

    return "Policies: " + ", ".join(available()) + "."
