"""phaser engine: build and run local real engines (llama.cpp's server with
SmolLM2-135M) to try phaser's openai backend on a machine without a GPU."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    eng = typer.Typer(help="Local real engines: llama.cpp's server on the CPU, built and cached outside the checkout.",
                      no_args_is_help=True)
    app.add_typer(eng, name="engine")

    @eng.command("build")
    def build():
        """Build llama-server (from the llama-cpp-python sdist) and fetch the model, if not cached yet."""
        from services.engines.llamacpp import ensure_model, ensure_server

        def log(m):
            typer.echo(m, err=True)

        typer.echo(f"{ensure_server(log)}\n{ensure_model(log)}")

    @eng.command("serve")
    def serve(
        instances: int = typer.Option(2, "--instances", envvar="PHASER_INSTANCES", min=1, help="Engine servers to start."),
        slots: int = typer.Option(4, "--slots", envvar="PHASER_ENGINE_SLOTS", min=1, help="Parallel sequences per server (-np)."),
        ctx_per_slot: int = typer.Option(2048, "--ctx-per-slot", envvar="PHASER_ENGINE_CTX_PER_SLOT", min=64,
                                         help="Context tokens per slot (-c is slots x this)."),
        threads: int = typer.Option(1, "--threads", envvar="PHASER_ENGINE_THREADS", min=1, help="CPU threads per server."),
    ):
        """Start local llama-servers, print their endpoints, run until Ctrl-C or SIGTERM."""
        import signal
        import time

        from services.engines.llamacpp import LocalEngines, ServerConfig

        engines = LocalEngines(instances, ServerConfig(slots, ctx_per_slot, threads), log=lambda m: typer.echo(m, err=True))
        engines.start()

        def _term(*_):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _term)
        typer.echo(",".join(engines.endpoints))
        typer.echo(f"{instances} llama-server(s) up; use them with: phaser worker --backend openai "
                   f"--endpoint {' --endpoint '.join(engines.endpoints)}   (Ctrl-C stops them)", err=True)
        try:
            while all(p.poll() is None for p in engines.procs):
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            engines.stop()
