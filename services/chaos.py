"""``phaser chaos``: a reproducible fault-injection run.

For each fault of the schedule, a fresh ``phaser up`` stack (separate
processes: router, two workers each hosting half the instances, the trainer
when the fault needs it) runs on one broker that chaos starts itself (tansu or
Apache Kafka, loopback only), the load is published, the fault is applied
``at_s`` wall seconds into the load, and what came back on ``completions`` is
counted: requested, completed ``ok``, failed (status ``error``), rejected,
lost, duplicate completions, dead letters, and times:

* ``stall_s`` — the longest wait between two completions from the fault on;
* ``recover_s`` — from the end of the fault (the restart, the resume) to the
  next completion;
* ``reroute_s`` (``kill-worker``, ``engine-down``) — from the kill to the first completion of a
  request the router re-routed (epoch >= 1).

Chaos is also the supervisor (as ``restart: on-failure`` is in compose): a
child on the request path that exits is restarted, and counted in ``restarts``.

Faults (``FAULTS``):

* ``kill-router`` / ``kill-trainer`` — SIGKILL, restarted after ``restart_s``;
* ``kill-replica`` — two router replicas (``phaser up --routers 2``); SIGKILL of
  replica r1, restarted after ``down_s``: its ``requests`` partition moves to r0
  when the group notices (a session timeout), and back when r1 returns.
  ``resume_s``: from the kill to r0's first decision on r1's partition;
* ``kill-worker`` — SIGKILL of the worker hosting the upper half of the
  instances, restarted after ``down_s`` (longer than the router's failover
  limit, so its requests are re-routed and the revived worker is fenced);
* ``broker-pause`` — SIGSTOP the broker for ``pause_s``, then SIGCONT;
* ``broker-restart`` — SIGKILL the broker and start it again on the same port.
  Apache Kafka keeps its log; tansu keeps nothing (every topic, record and
  offset is gone), so on tansu what was in flight is lost by design;
* ``poison`` — ``POISON`` records (bad JSON, wrong version, NaN, bad UTF-8,
  out-of-bounds numbers, a 900 KB prompt) published raw into ``requests``
  amid the load: each must be dead-lettered and every valid request served;
* ``clock-skew`` — the load generator's clock runs ``skew_s`` wall seconds ahead
  of the stack's, so every ``arrival_s`` is in the workers' future;
* ``engine-down`` (with ``--engine llama.cpp``: the instances are real
  llama-servers) — SIGKILL of the last instance's engine, restarted on the
  same port after ``down_s``: its worker's circuit opens, the instance turns
  unhealthy, the router re-routes what was in flight there; when the engine
  answers again the circuit closes and the instance serves again.

The run is bounded: each fault's stack ends when every request came back or
nothing arrived for ``drain_timeout_s`` after the load and the fault finished.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import orjson

from phaser.errors import PhaserError

SIM_FAULTS = ("kill-router", "kill-replica", "kill-worker", "kill-trainer", "broker-pause", "broker-restart", "poison",
              "clock-skew")
FAULTS = SIM_FAULTS + ("engine-down",)

#: raw records that must each end in the dead-letter topic (never stop a service)
POISON: tuple[bytes, ...] = (
    b"{not json at all",
    orjson.dumps({"v": 2, "id": "chaos-no-prompt", "arrival_s": 1.0, "output_tokens": 5}),
    orjson.dumps({"v": 9, "id": "chaos-future", "arrival_s": 1.0, "prompt_tokens": 3}),
    b'{"v": 2, "id": "\xff\xfe", "arrival_s": 1.0, "prompt_tokens": 3}',
    b'{"v": 2, "id": "chaos-nan", "arrival_s": NaN, "prompt_tokens": 3}',
    b'{"v": 2, "id": "chaos-big", "arrival_s": 1.0, "prompt_tokens": 99999999999999999999999}',
    orjson.dumps({"v": 2, "id": "chaos-far", "arrival_s": 1e300, "prompt_tokens": 3, "output_tokens": 2}),
    orjson.dumps({"v": 2, "id": "chaos-huge", "arrival_s": 1.0, "prompt_tokens": 5, "output_tokens": 5,
                  "prompt_text": "x" * 900_000}),
)


@dataclass
class ChaosConfig:
    broker: str = "tansu"  # or "kafka"
    faults: tuple[str, ...] = SIM_FAULTS
    requests: int = 1500
    workload: str = "paper-mix"
    instances: int = 4
    profile: str = "v100-llama2-7b"
    policy: str = "least-requests"
    time_scale: float = 10.0
    seed: int = 0
    at_s: float = 2.5          # wall seconds into the load
    restart_s: float = 1.0     # kill-router / kill-trainer: down for this long
    down_s: float = 12.0       # kill-worker: down for this long (> the router's 5 s failover floor)
    pause_s: float = 3.0       # broker-pause
    skew_s: float = 0.5        # clock-skew, wall seconds (x time scale in stack seconds)
    drain_timeout_s: float = 30.0
    engine: str | None = None  # "llama.cpp": real engines (then time_scale 1, a small workload)
    rate: float | None = None

    def __post_init__(self) -> None:
        bad = [f for f in self.faults if f not in FAULTS]
        if bad:
            raise PhaserError(f"unknown fault {bad[0]!r}; known: {', '.join(FAULTS)}")
        if "engine-down" in self.faults and self.engine is None:
            raise PhaserError("the engine-down fault needs real engines: add --engine llama.cpp")
        if self.broker not in ("tansu", "kafka"):
            raise PhaserError(f"--broker must be tansu or kafka, got {self.broker!r}")
        if self.instances < 2:
            raise PhaserError("chaos needs at least 2 instances (two workers)")


@dataclass
class FaultHook:
    """The ``services.up`` hook that applies one fault and supervises the children."""

    fault: str
    cfg: ChaosConfig
    broker: object
    supervise: bool = True
    fired_at: float | None = None
    ended_at: float | None = None
    restarts: int = 0
    poison_sent: int = 0
    arrivals: list[float] = field(default_factory=list)  # wall s of each new completion (after the fault)
    first_rerouted: float | None = None
    killed_unix: float | None = None  # kill-replica: wall time of the kill
    _held: str | None = None  # child kept down by the fault
    _seen: int = 0
    load_wall: object = None

    def __post_init__(self) -> None:
        if self.fault == "clock-skew":
            skew = self.cfg.skew_s
            self.load_wall = lambda: time.time() + skew

    @property
    def busy(self) -> bool:
        return self.fired_at is None or self.ended_at is None

    def _due(self) -> float:
        return {"kill-worker": self.cfg.down_s, "engine-down": self.cfg.down_s, "kill-replica": self.cfg.down_s,
                "broker-pause": self.cfg.pause_s}.get(self.fault, self.cfg.restart_s)

    async def tick(self, elapsed: float, ctx) -> None:
        tally = ctx.tally
        n = len(tally.completions)
        if n > self._seen:
            if self.fired_at is not None:
                self.arrivals.append(elapsed)
                if self.first_rerouted is None and self.fault in ("kill-worker", "engine-down"):
                    if any(c.epoch > 0 for c in list(tally.completions.values())[self._seen:]):
                        self.first_rerouted = elapsed
            self._seen = n
        for name, code in ctx.children.dead():  # the supervisor
            if name != self._held:
                print(f"chaos: {name} exited with code {code}; restarting it", file=sys.stderr)
                ctx.respawn(name)
                self.restarts += 1
        if self.fired_at is None and elapsed >= self.cfg.at_s:
            self.fired_at = elapsed
            t0 = time.monotonic()
            await self._fire(ctx)
            if self.fault in ("broker-restart", "poison", "clock-skew"):  # over once applied
                self.ended_at = elapsed + (time.monotonic() - t0)
        elif self.fired_at is not None and self.ended_at is None and elapsed >= self.fired_at + self._due():
            await self._end(ctx)
            self.ended_at = elapsed

    def _kill(self, ctx, name: str) -> None:
        p = ctx.children.procs[name]
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        self._held = name

    async def _fire(self, ctx) -> None:
        f = self.fault
        print(f"chaos: {f} at {self.fired_at:.1f} s into the load", file=sys.stderr)
        if f == "kill-router":
            self._kill(ctx, "router")
        elif f == "kill-replica":
            self.killed_unix = time.time()
            self._kill(ctx, "router-r1")
        elif f == "kill-trainer":
            self._kill(ctx, "trainer")
        elif f == "kill-worker":
            self._kill(ctx, sorted(n for n in ctx.cmds if n.startswith("worker-"))[-1])
        elif f == "engine-down":
            ctx.engines.kill(len(ctx.engines.procs) - 1)
        elif f == "broker-pause":
            self.broker.pause()
        elif f == "broker-restart":
            # not in a thread: the broker runs under PR_SET_PDEATHSIG, which fires when the
            # *thread* that spawned it exits (services.lifecycle.die_with_parent)
            self.broker.restart(hard=True)
        elif f == "poison":
            from services.kafka import make_producer

            prod = make_producer(ctx.bootstrap, client_id="phaser-chaos")
            await prod.start()
            try:
                for raw in POISON:
                    await (await prod.send(ctx.topics.name("requests"), raw))  # raw: past every client-side check
                    self.poison_sent += 1
            finally:
                await prod.stop()

    async def _end(self, ctx) -> None:
        if self.fault == "broker-pause":
            self.broker.resume()
        elif self.fault == "engine-down":
            ctx.engines.restart(len(ctx.engines.procs) - 1)
            self.restarts += 1
        elif self._held is not None:
            name, self._held = self._held, None
            ctx.respawn(name)
            self.restarts += 1

    def row(self, summary: dict, dead_letters: int) -> dict:
        after = [t for t in self.arrivals if self.ended_at is not None and t >= self.ended_at]
        marks = ([self.fired_at] if self.fired_at is not None else []) + self.arrivals
        gaps = [b - a for a, b in zip(marks, marks[1:])]
        return {
            "fault": self.fault, "broker": self.cfg.broker,
            **{k: summary[k] for k in ("requested", "completed", "failed", "rejected", "lost", "duplicates")},
            "load_failed": summary.get("load", {}).get("failed", 0), "dead_letters": dead_letters, "poison_sent": self.poison_sent, "restarts": self.restarts,
            "fault_at_s": _r(self.fired_at), "stall_s": _r(max(gaps) if gaps else None),
            "recover_s": _r(after[0] - self.ended_at if after else None),
            "reroute_s": _r(self.first_rerouted - self.fired_at if self.first_rerouted is not None else None),
            "rerouted": sum(1 for c in summary.get("_completions", ()) if c.epoch > 0),
            "e2e_mean_s": _r(summary.get("e2e_mean_s")),
            "lost_ids": summary.get("lost_ids", []),
        }


def _r(x):
    return None if x is None else round(float(x), 2)


async def _trace_lost(bootstrap: str, topics, n_instances: int, lost_ids: list[str]) -> dict[str, list[str]]:
    """Where each lost request went, read back after the run: its ``assignments``
    records ("assigned i<instance> e<epoch>[ revoked] at <decided_s> @p<partition>:<offset>"),
    any ``completions`` record (then the run's own consumer missed one the topic
    holds: a read-side loss), and any dead letter naming it."""
    from services.kafka import GAPS, read_back

    want = set(lost_ids)
    out: dict[str, list[str]] = {rid: [] for rid in lost_ids}
    got, _ = await read_back(bootstrap, topics, "assignments", range(n_instances), timeout_s=30, client_id="phaser-chaos",
                             with_offsets=True)
    for p, o, a in got:
        if a.request.id in want:
            out[a.request.id].append(f"assigned i{a.instance} e{a.epoch}" + (" revoked" if a.revoked else "")
                                     + f" at {a.decided_s:.2f} @p{p}:{o}")
    done, _ = await read_back(bootstrap, topics, "completions", [0], timeout_s=30, client_id="phaser-chaos",
                              with_offsets=True)
    for p, o, c in done:
        if c.request_id in want:
            out[c.request_id].append(f"completion {c.status} on i{c.instance} @p{p}:{o}")
    dead, _ = await read_back(bootstrap, topics, "dead-letters", [0], timeout_s=30, client_id="phaser-chaos")
    for d in dead:
        raw = base64.b64decode(d.original_b64)
        for rid in want:
            if rid.encode() in raw:
                out[rid].append(f"dead letter from {d.source}: {d.reason}")
    if GAPS:
        out["_gaps"] = [f"{t}[{p}] expected {w} got {g}" for t, p, w, g in GAPS]
    return out


async def _replica_resume(bootstrap: str, topics, n_instances: int, killed_unix: float, time_scale: float) -> dict:
    """kill-replica: which ``requests`` partition each request was on (its key's), and from the
    kill to the survivor r0's first decision on a request of the dead r1's partition (wall s);
    also how many requests each replica routed."""
    from services.kafka import partition_count, read_back

    n_req = await partition_count(bootstrap, topics.name("requests"))
    reqs, _ = await read_back(bootstrap, topics, "requests", range(n_req), timeout_s=30, client_id="phaser-chaos",
                              with_offsets=True)
    part = {m.id: p for p, _, m in reqs}
    got, _ = await read_back(bootstrap, topics, "assignments", range(n_instances), timeout_s=30, client_id="phaser-chaos")
    kill_stack = killed_unix * time_scale
    r1_parts = {part[a.request.id] for a in got if a.router == "r1" and a.request.id in part}
    took = [a.decided_s for a in got if a.router == "r0" and not a.revoked and a.decided_s >= kill_stack
            and part.get(a.request.id) in r1_parts]
    per = {}
    for a in got:
        if not a.revoked:
            per[a.router] = per.get(a.router, 0) + 1
    return {"resume_s": (min(took) - kill_stack) / time_scale if took else None, "routed_by": per}


async def _count_dead_letters(bootstrap: str, topics) -> int:
    from services.kafka import read_back

    dead, _ = await read_back(bootstrap, topics, "dead-letters", [0], timeout_s=30, client_id="phaser-chaos")
    return len(dead)


def _start_broker(kind: str):
    if kind == "kafka":
        from services.apache_kafka import ApacheKafka

        return ApacheKafka().start()
    from services.broker import EmbeddedBroker, free_port

    return EmbeddedBroker(port=free_port(), schemas=False).start()


def run_chaos(cfg: ChaosConfig, progress=print, broker=None) -> list[dict]:
    """One row per fault (see the module docstring). ``broker``: an already started
    ``EmbeddedBroker``/``ApacheKafka`` to use (and leave running) instead of starting one."""
    from services.up import UpConfig, run_up

    rows = []
    own = broker is None
    broker = _start_broker(cfg.broker) if own else broker
    try:
        for fault in cfg.faults:
            hook = FaultHook(fault, cfg, broker)
            up = UpConfig(requests=cfg.requests, workload=cfg.workload, seed=cfg.seed, instances=cfg.instances,
                          workers=2, profile=cfg.profile, policy=cfg.policy, time_scale=cfg.time_scale,
                          bootstrap=broker.bootstrap, drain_timeout_s=cfg.drain_timeout_s, monitor=False,
                          trainer=fault == "kill-trainer", engine=cfg.engine, rate=cfg.rate,
                          routers=2 if fault == "kill-replica" else 1)
            captured: dict = {}
            summary = run_up(up, hook=hook, capture=captured)
            summary["_completions"] = captured.get("completions", ())
            dead = asyncio.run(_count_dead_letters(broker.bootstrap, captured["topics"]))
            row = hook.row(summary, dead)
            if fault == "kill-replica" and hook.killed_unix is not None:
                row.update(asyncio.run(_replica_resume(broker.bootstrap, captured["topics"], cfg.instances,
                                                       hook.killed_unix, cfg.time_scale)))
                row["resume_s"] = _r(row["resume_s"])
            if row["lost_ids"]:  # say where they went: the first thing anyone asks about a loss
                row["lost_trace"] = asyncio.run(_trace_lost(broker.bootstrap, captured["topics"], cfg.instances,
                                                            row["lost_ids"]))
            rows.append(row)
            progress(row)
    finally:
        if own:
            broker.stop()
    return rows


def render(rows: list[dict]):
    from rich.table import Table

    cols = ("fault", "broker", "requested", "completed", "failed", "rejected", "lost", "duplicates", "dead_letters",
            "restarts", "rerouted", "stall_s", "recover_s", "reroute_s", "resume_s")
    t = Table(title="phaser chaos")
    for c in cols:
        t.add_column(c, justify="left" if c in ("fault", "broker") else "right")
    for r in rows:
        t.add_row(*("-" if r.get(c) is None else str(r[c]) for c in cols))
    return t
