"""phaser broker: run a Kafka broker in the foreground: the embedded tansu (default) or a real Apache Kafka."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("broker")
    def broker(
        host: str = typer.Option("127.0.0.1", "--host", envvar="PHASER_BROKER_HOST", help="Address to listen on."),
        port: int = typer.Option(9092, "--port", envvar="PHASER_BROKER_PORT", help="Port to listen on."),
        no_schemas: bool = typer.Option(False, "--no-schemas", envvar="PHASER_BROKER_NO_SCHEMAS",
                                        help="Do not enforce protos/' JSON Schemas (accept any record; tansu only)."),
        kafka: bool = typer.Option(False, "--kafka", envvar="PHASER_BROKER_KAFKA",
                                   help="Run a real single-node Apache Kafka (KRaft) instead of tansu; needs Java 17+ "
                                        "and Maven the first time (jars are cached under $PHASER_CACHE or ~/.cache/phaser)."),
        data_dir: str = typer.Option(None, "--data-dir", envvar="PHASER_BROKER_DATA_DIR",
                                     help="With --kafka: keep the log here (survives restarts); default: a temporary folder."),
    ):
        """Run a broker until Ctrl-C or SIGTERM. tansu keeps everything in memory and
        enforces protos/' schemas; Apache Kafka keeps a durable log and grants
        idempotent producers (consumers validate and dead-letter)."""
        import signal

        if kafka:
            from services.apache_kafka import KAFKA_VERSION, ApacheKafka

            typer.echo(f"starting Apache Kafka {KAFKA_VERSION} (first run downloads it with Maven)...", err=True)
            b = ApacheKafka(host=host, port=port, log_dir=data_dir)
            what = f"Apache Kafka {KAFKA_VERSION}, log in {data_dir or 'a temporary folder'}"
        else:
            from services.broker import EmbeddedBroker

            b = EmbeddedBroker(host=host, port=port, schemas=not no_schemas)
            what = f"tansu, schemas {'off' if no_schemas else 'enforced'}"
        b.start()
        typer.echo(f"broker listening on {b.bootstrap} ({what}); Ctrl-C stops it", err=True)

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
