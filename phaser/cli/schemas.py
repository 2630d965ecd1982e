"""phaser schemas: write or check the per-topic JSON Schemas generated from protos/."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("schemas")
    def schemas(check: bool = typer.Option(False, "--check", help="Exit 1 if the checked-in schemas drifted from protos/.")):
        """Regenerate protos/schemas/*.json from the message definitions (or --check them)."""
        from protos.schemas_gen import main as gen

        raise typer.Exit(gen(["--check"] if check else []))
