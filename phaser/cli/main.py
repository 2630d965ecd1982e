"""Entry point of the ``phaser`` console script."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from phaser.errors import PhaserError

app = typer.Typer(
    name="phaser",
    help="Phase-aware load balancer for LLM inference: run the stack, drive load, benchmark and train routers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("phaser")
        except PackageNotFoundError:  # run from a checkout without installing it
            v = "unknown (not installed)"
        typer.echo(f"phaser {v}")
        raise typer.Exit(0)


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="Print phaser's version and exit.")) -> None:
    """Phase-aware load balancer for LLM inference."""


def _register_all() -> None:
    import phaser.cli as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name in ("main",) or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"phaser.cli.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr, exit code 2."""
    try:
        app(args=argv, standalone_mode=True)
    except PhaserError as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except SystemExit as e:  # typer/click exits through SystemExit
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _console() -> None:  # pragma: no cover - thin wrapper
    raise SystemExit(main())


if __name__ == "__main__":  # python -m phaser.cli.main
    _console()
