"""Shared fixtures. Every Kafka test talks to a real broker started here.

``broker`` and ``bare_broker`` are parametrized over both brokers phaser
supports, so every Kafka-facing test runs twice:

* ``tansu`` — the embedded broker ``pip install`` users get (``phaser up``);
  ``broker`` enforces protos/' JSON Schemas, ``bare_broker`` does not;
* ``kafka`` — a real single-node KRaft Apache Kafka provisioned from Maven
  Central (``services.apache_kafka``), the same version as docker-compose.yml.
  A plain Kafka has no schema registry, so both fixtures are the same broker.

Tests of a feature only one broker has use ``schema_broker`` (tansu's schema
registry) or ``kafka`` (durable log, idempotent producer) and say so.
Without Java or Maven the ``kafka`` tier is skipped with one line saying why,
unless ``PHASER_REQUIRE_KAFKA=1`` (CI), where that is an error.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from services.broker import EmbeddedBroker, free_port

BROKERS = ("tansu", "kafka")
#: SASL users of the Kafka fixture's SASL_SSL listener (``kafka.secure_bootstrap``)
KAFKA_USERS = {"phaser": "pw-never-printed-7f3a"}


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """A real Apache Kafka (KRaft, single node) for the whole session."""
    from services.apache_kafka import ApacheKafka, KafkaUnavailable

    log = tmp_path_factory.mktemp("kafka") / "broker.log"
    try:
        k = ApacheKafka(log_path=str(log), users=KAFKA_USERS)  # also a SASL_SSL listener (tests/stack/test_kafka_security.py)
        k.start()
    except KafkaUnavailable as e:
        if os.environ.get("PHASER_REQUIRE_KAFKA"):
            raise
        pytest.skip(f"Apache Kafka tier skipped: {e}")
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="session")
def schema_broker():
    """tansu with protos/' schemas enforced by the broker itself (a tansu-only feature)."""
    with EmbeddedBroker(port=free_port(), schemas=True) as b:
        yield b


@pytest.fixture(scope="session")
def _tansu_bare():
    with EmbeddedBroker(port=free_port(), schemas=False) as b:
        yield b


@pytest.fixture(scope="session", params=BROKERS)
def broker(request):
    """A real Kafka-protocol broker: tansu with schemas enforced, then Apache Kafka."""
    name = "schema_broker" if request.param == "tansu" else "kafka"
    return request.getfixturevalue(name)


@pytest.fixture(scope="session", params=BROKERS)
def bare_broker(request):
    """A broker without schema enforcement (what a plain Kafka cluster does), so
    consumer-side validation and dead-lettering are exercised."""
    name = "_tansu_bare" if request.param == "tansu" else "kafka"
    return request.getfixturevalue(name)


# ---------------------------------------------------------------- real engines
#
# The llama.cpp tier (tests/engines/) runs against real llama-server processes
# (services.engines.llamacpp). Building the server takes ~11 minutes on 2 cores,
# so a session whose collection includes that tier starts the build in the
# background at once (niced, cached under $PHASER_CACHE or ~/.cache/phaser,
# once per machine) and moves the tier to the end of the run; the fixture
# waits for it. PHASER_SKIP_ENGINE=1 skips the tier; without cmake or a
# compiler it is skipped with one line saying why, unless PHASER_REQUIRE_ENGINE=1 (CI).

_ENGINE_BUILD: dict = {}


#: seconds before pytest-timeout's own limit at which an async test is cancelled inside its loop
ASYNC_TIMEOUT_MARGIN_S = 15.0


def _bound_async_tests(config, items) -> None:
    """pytest-timeout's SIGALRM cannot stop an async test: it raises pytest's ``Failed``
    (a BaseException) in whatever asyncio callback is running, and asyncio's
    ``Handle._run`` logs it and carries on, so a hung test hangs the whole run (it did,
    26 min, before the ten-swap test was fixed). Each coroutine test is therefore run
    under ``asyncio.wait_for`` with the test's timeout (its ``timeout`` mark, else the
    ini value) minus ``ASYNC_TIMEOUT_MARGIN_S``: a hang becomes a failure with a
    traceback, and the run goes on."""
    import functools
    import inspect

    default = float(config.getini("timeout") or 0)
    for item in items:
        fn = getattr(item, "obj", None)
        if fn is None or not inspect.iscoroutinefunction(fn):
            continue
        mark = item.get_closest_marker("timeout")
        limit = float(mark.args[0]) if mark is not None and mark.args else default
        if limit <= ASYNC_TIMEOUT_MARGIN_S:
            continue

        def bind(fn=fn, bound=limit - ASYNC_TIMEOUT_MARGIN_S, name=item.nodeid):
            @functools.wraps(fn)
            async def bounded(*args, **kwargs):
                try:
                    return await asyncio.wait_for(fn(*args, **kwargs), bound)
                except asyncio.TimeoutError:
                    pytest.fail(f"{name} did not finish in {bound:g}s (cancelled inside its event loop)")
            return bounded

        item.obj = bind()


def pytest_collection_modifyitems(session, config, items):
    _bound_async_tests(config, items)
    engine = [i for i in items if "tests/engines/" in str(i.fspath).replace("\\", "/")]
    if not engine:
        return
    items[:] = [i for i in items if i not in engine] + engine  # last: the build overlaps the rest
    _start_engine_build()


def _start_engine_build() -> None:
    import subprocess
    import sys

    from services.engines.llamacpp import cache_dir, missing_prerequisites, model_path, server_binary

    if os.environ.get("PHASER_SKIP_ENGINE") or (server_binary().exists() and model_path().exists()):
        return
    missing = missing_prerequisites()
    if missing:
        _ENGINE_BUILD["why"] = f"missing {', '.join(missing)}"
        return
    cache_dir().mkdir(parents=True, exist_ok=True)
    log = open(cache_dir() / "engine-build-from-tests.log", "w")
    _ENGINE_BUILD["log"] = log.name
    _ENGINE_BUILD["proc"] = subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "phaser.cli.main", "engine", "build"],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _unnice(root: int) -> None:
    """Give the niced build (``root`` and every descendant: cmake, make, the compilers) normal
    priority again, where this user may: niced under a busy core it would barely move."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            os.setpriority(os.PRIO_PROCESS, pid, 0)
        except OSError:  # not permitted (an unprivileged user cannot lower niceness) or gone
            pass
        todo += kids.get(pid, [])


@pytest.fixture(scope="session")
def engine_built():
    """The llama.cpp server binary and model are cached (waits for the background build)."""
    from services.engines.llamacpp import model_path, server_binary

    def skip(why):
        if os.environ.get("PHASER_REQUIRE_ENGINE"):
            pytest.fail(f"llama.cpp tier required (PHASER_REQUIRE_ENGINE=1) but {why}")
        pytest.skip(f"llama.cpp tier skipped: {why}")

    if os.environ.get("PHASER_SKIP_ENGINE"):
        skip("PHASER_SKIP_ENGINE is set")
    if "why" in _ENGINE_BUILD:
        skip(_ENGINE_BUILD["why"])
    proc = _ENGINE_BUILD.get("proc")
    if proc is not None:
        if proc.poll() is None:  # every other test is done: the build need not yield any more
            _unnice(proc.pid)
        rc = proc.wait(timeout=3600)
        if rc != 0:
            skip(f"`phaser engine build` failed (exit {rc}); see {_ENGINE_BUILD['log']}")
    if not (server_binary().exists() and model_path().exists()):
        skip("llama-server is not built (run `phaser engine build`)")
    return server_binary()


@pytest.fixture(scope="session")
def llama_engines(engine_built):
    """Two real llama-servers (4 slots x 2,048 tokens, 1 thread each) for the session."""
    from services.engines.llamacpp import LocalEngines, ServerConfig

    engines = LocalEngines(2, ServerConfig(slots=4, ctx_per_slot=2048, threads=1))
    engines.start(deadline_s=180)
    try:
        yield engines
    finally:
        engines.stop()
