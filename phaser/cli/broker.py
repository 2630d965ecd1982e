"""phaser broker: run the embedded Kafka-compatible broker (tansu) in the foreground."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("broker")
    def broker(
        host: str = typer.Option("127.0.0.1", "--host", envvar="PHASER_BROKER_HOST", help="Address to listen on."),
        port: int = typer.Option(9092, "--port", envvar="PHASER_BROKER_PORT", help="Port to listen on."),
        no_schemas: bool = typer.Option(False, "--no-schemas", envvar="PHASER_BROKER_NO_SCHEMAS",
                                        help="Do not enforce protos/' JSON Schemas (accept any record)."),
    ):
        """Run the embedded broker with protos/' schemas as its registry until Ctrl-C or SIGTERM."""
        import signal

        from services.broker import EmbeddedBroker

        b = EmbeddedBroker(host=host, port=port, schemas=not no_schemas)
        b.start()
        typer.echo(f"broker listening on {b.bootstrap} (schemas {'off' if no_schemas else 'enforced'}); Ctrl-C stops it",
                   err=True)
        def _term(*_):  # SIGTERM stops the broker like Ctrl-C
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _term)
        try:
            code = b.proc.wait()
            raise typer.Exit(code or 0)
        except KeyboardInterrupt:
            pass
        finally:
            b.stop()
