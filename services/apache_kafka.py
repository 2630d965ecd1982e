"""A real Apache Kafka broker (single-node KRaft) for tests, CI and users with Java.

Apache Kafka is not on PyPI, so phaser provisions it from Maven Central: a
throwaway POM names ``org.apache.kafka:kafka_2.13:KAFKA_VERSION`` and Maven's
``dependency:copy-dependencies`` copies the broker's jars and every runtime
dependency into a cache folder (``$PHASER_CACHE`` or ``~/.cache/phaser``,
``kafka-<version>/libs``, about 46 MB, about 20 s on a fresh machine). The
broker then runs as ``java -cp 'libs/*' kafka.Kafka server.properties`` after
``kafka.tools.StorageTool format`` of a fresh log directory: exactly what the
official tarball's scripts do, without the scripts.

Decisions:

* **Version** 3.9.1, the one ``docker-compose.yml`` runs (``apache/kafka:3.9.1``):
  tests and compose use the same broker. aiokafka 0.14 speaks it fully
  (idempotent producer, transactions, read-committed consumers).
* **Single node, KRaft combined mode** (broker + controller in one JVM), every
  replication factor 1, ``group.initial.rebalance.delay.ms=0``: a test broker
  that is ready as soon as its port answers metadata requests.
* **Durable log**: the log directory survives ``restart()`` (a broker restart
  loses nothing, unlike tansu's memory storage); ``stop()`` of a broker that
  made its own temporary directory removes it.
* **No orphan JVMs**: the JVM runs in its own process group with
  ``PR_SET_PDEATHSIG`` = SIGKILL (``services.lifecycle.die_with_parent``), so it
  dies with the Python process that started it, even under ``kill -9``; ``stop()`` sends SIGTERM (Kafka's clean
  shutdown), waits ``STOP_GRACE_S`` and then SIGKILLs the group.
* **A secured listener** (``users={name: password}``): besides the plaintext
  one (``bootstrap``, also the inter-broker listener), a ``SASL_SSL`` listener
  on ``secure_bootstrap`` accepting SASL PLAIN and SCRAM-SHA-256 for those
  users, with a throwaway CA and server certificate made by ``openssl`` in the
  log's sibling folder (``ca_file`` is what clients trust). For testing the
  ``PHASER_KAFKA_*`` pass-through (``services.kafka_security``).
* **Missing Java or Maven** raises ``KafkaUnavailable`` with one line saying
  which; the test tier that needs this broker is then skipped with that line.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from phaser.errors import PhaserError
from services.broker import free_port, port_open
from services.lifecycle import die_with_parent

KAFKA_VERSION = "3.9.1"
SLF4J_VERSION = "1.7.36"  # the binding Kafka 3.9's own distribution ships (reload4j)
STOP_GRACE_S = 15.0
START_TIMEOUT_S = 120.0  # a JVM on a loaded 2-core machine: generous

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.phaser</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


class KafkaUnavailable(PhaserError):
    """Apache Kafka cannot be provisioned or started here (no Java, no Maven, no network)."""


def cache_dir() -> Path:
    return Path(os.environ.get("PHASER_CACHE") or Path.home() / ".cache" / "phaser")


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / f"kafka-{version}"


def java_binary() -> str:
    java = shutil.which("java", path=(str(Path(os.environ["JAVA_HOME"]) / "bin") if os.environ.get("JAVA_HOME") else None))
    java = java or shutil.which("java")
    if not java:
        raise KafkaUnavailable("Apache Kafka needs Java 17+ ('java' is not on PATH; e.g. apt-get install openjdk-17-jre-headless)")
    return java


def provision(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """The folder of Kafka's jars (``<home>/libs``), downloading them with Maven
    once. Idempotent and safe to run concurrently (a marker file is written last,
    the jars are copied into a fresh folder that is renamed into place)."""
    home = kafka_home(version)
    libs = home / "libs"
    if (home / "READY").exists() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    java_binary()
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaUnavailable("provisioning Apache Kafka needs Maven ('mvn' is not on PATH; e.g. apt-get install maven)")
    home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="provision-", dir=home))
    try:
        (work / "pom.xml").write_text(_POM.format(kafka=version, slf4j=SLF4J_VERSION))
        cmd = [mvn, "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
               f"-DoutputDirectory={work / 'libs'}", "-DincludeScope=runtime"] + (["-q"] if quiet else [])
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0 or not any((work / "libs").glob("kafka_2.13-*.jar")):
            tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
            raise KafkaUnavailable(f"Maven could not fetch Apache Kafka {version}: {' | '.join(tail) or 'no output'}")
        if libs.exists():
            shutil.rmtree(libs, ignore_errors=True)
        (work / "libs").rename(libs)
        (home / "log4j.properties").write_text(_LOG4J)
        (home / "READY").write_text(version + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return libs


def _cluster_id() -> str:
    """A random KRaft cluster id (URL-safe base64 of 16 bytes). Like Kafka's own
    ``Uuid.randomUuid``, never one starting with '-': the storage tool's argument
    parser would take it for an option (1 run in 64 failed to format)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class ApacheKafka:
    """A single-node KRaft Apache Kafka. Same shape as ``EmbeddedBroker``:
    ``start()``/``stop()``/``restart()``, ``bootstrap``, a context manager."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    log_dir: str | None = None  # None: a temporary directory removed by stop()
    log_path: str | None = None  # the broker's own log (stdout/stderr); None: discarded
    version: str = KAFKA_VERSION
    extra_config: dict = field(default_factory=dict)
    users: dict | None = None  # SASL_SSL listener for these users (see module docstring)
    secure_port: int = 0
    kind: str = field(default="kafka", init=False)
    proc: subprocess.Popen | None = field(default=None, init=False)
    _tmp: str | None = field(default=None, init=False)
    _controller_port: int = field(default=0, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def secure_bootstrap(self) -> str:
        return f"{self.host}:{self.secure_port}"

    @property
    def ca_file(self) -> str:
        return str(self._tls_dir / "ca.pem")

    @property
    def _tls_dir(self) -> Path:
        return Path(self.log_dir).parent / f".{Path(self.log_dir).name}.tls"

    def _make_certs(self) -> None:
        """A CA and a server certificate for 127.0.0.1/localhost (openssl, 2 days)."""
        d = self._tls_dir
        d.mkdir(exist_ok=True)
        if (d / "server.pem").exists():
            return
        openssl = shutil.which("openssl")
        if openssl is None:
            raise KafkaUnavailable("a SASL_SSL listener needs the openssl command (Debian package openssl)")

        def run(*args):
            r = subprocess.run([openssl, *args], cwd=d, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise PhaserError(f"openssl {args[0]} failed: {r.stderr.strip()[-300:]}")

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=phaser test CA")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={self.host}")
        (d / "san.ext").write_text(f"subjectAltName=IP:{self.host},DNS:localhost\n")
        run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.crt", "-days", "2", "-extfile", "san.ext")
        (d / "server.pem").write_text((d / "server.key").read_text() + (d / "server.crt").read_text())

    def _secure_config(self) -> dict:
        if not self.users:
            return {}
        plain = " ".join(f'user_{u}="{pw}"' for u, pw in self.users.items())
        return {
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self._controller_port},"
                         f"SECURE://{self.host}:{self.secure_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port},SECURE://{self.host}:{self.secure_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SECURE:SASL_SSL",
            "listener.name.secure.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
            "listener.name.secure.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain};",
            "listener.name.secure.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self._tls_dir / "server.pem"),
        }

    def _config(self) -> str:
        c = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self._controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self._controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.log_dir,
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "message.max.bytes": str(2 * 1024 * 1024),
            **self._secure_config(),
            **{k: str(v) for k, v in self.extra_config.items()},
        }
        return "".join(f"{k}={v}\n" for k, v in c.items())

    def _java(self, main: list[str]) -> list[str]:
        home = kafka_home(self.version)
        return [java_binary(), "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
                f"-Dlog4j.configuration=file:{home / 'log4j.properties'}", "-cp", str(home / "libs" / "*"), *main]

    def start(self, timeout: float = START_TIMEOUT_S) -> "ApacheKafka":
        provision(self.version)
        if not self.port:
            self.port = free_port()
        if port_open(self.host, self.port):
            raise PhaserError(f"port {self.bootstrap} is already in use; pick another with --port or stop what holds it")
        fresh = self.log_dir is None
        if fresh:
            self._tmp = tempfile.mkdtemp(prefix="phaser-kafka-")
            self.log_dir = self._tmp
        self._controller_port = self._controller_port or free_port()
        if self.users:
            self.secure_port = self.secure_port or free_port()
            self._make_certs()
        props = Path(self.log_dir).parent / f".{Path(self.log_dir).name}.server.properties"
        props.write_text(self._config())
        self._props = props
        if not (Path(self.log_dir) / "meta.properties").exists():
            scram = [a for u, pw in (self.users or {}).items() for a in ("--add-scram", f"SCRAM-SHA-256=[name={u},password={pw}]")]
            r = subprocess.run(self._java(["kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props),
                                           "--ignore-formatted", *scram]),
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
            if r.returncode != 0:
                raise PhaserError(f"kafka storage format failed: {(r.stdout + r.stderr).strip()[-300:]}")
        self._spawn()
        self._wait_ready(timeout)
        return self

    def _spawn(self) -> None:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(die_with_parent(self._java(["kafka.Kafka", str(self._props)])),
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def _wait_ready(self, timeout: float) -> None:
        """Ready = the port answers and a metadata request names this broker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PhaserError(f"kafka exited at start with code {self.proc.returncode}"
                                  + (f"; see {self.log_path}" if self.log_path else ""))
            if port_open(self.host, self.port) and _metadata_ok(self.bootstrap):
                return
            time.sleep(0.2)
        self.stop()
        raise PhaserError(f"kafka did not become ready on {self.bootstrap} within {timeout:.0f}s")

    def pause(self) -> None:
        """SIGSTOP the broker (a hung broker: connections open, nothing answers)."""
        if self.proc:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def restart(self, timeout: float = START_TIMEOUT_S, hard: bool = False) -> None:
        """Stop (SIGKILL when ``hard``) and start again on the same port and log: nothing is lost."""
        self._terminate(kill=hard)
        self._spawn()
        self._wait_ready(timeout)

    def _terminate(self, kill: bool = False) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGCONT)  # a paused broker cannot shut down
                os.killpg(p.pid, signal.SIGKILL if kill else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # whatever is left in its group
        except (ProcessLookupError, PermissionError):
            pass
        p.wait()
        self.proc = None

    def stop(self) -> None:
        self._terminate()
        if self._tmp:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            shutil.rmtree(self._tmp, ignore_errors=True)
            Path(self._props).unlink(missing_ok=True)
            self._tmp = None
            self.log_dir = None

    def __enter__(self) -> "ApacheKafka":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _metadata_ok(bootstrap: str) -> bool:
    """A synchronous metadata probe with the Kafka protocol (no client library
    start-up cost): ApiVersions v0 answered with error 0."""
    import socket
    import struct

    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            client = b"phaser-probe"
            body = struct.pack(">hhih", 18, 0, 1, len(client)) + client  # ApiVersions v0, correlation 1
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(4)
            if len(head) < 4:
                return False
            n = struct.unpack(">i", head)[0]
            data = b""
            while len(data) < n:
                chunk = s.recv(n - len(data))
                if not chunk:
                    return False
                data += chunk
            corr, err = struct.unpack(">ih", data[:6])
            return corr == 1 and err == 0
    except OSError:
        return False
