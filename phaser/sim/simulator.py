"""The virtual-time cluster simulator: N ``Instance`` engines behind one router.

Event-driven, in virtual seconds. What happens, in time order (ties broken by
the kind order below, then by scheduling order, so a run is deterministic):

0. *instance event* — an instance's ``next_event_time()`` is due: it is
   advanced to that time; its finished requests are scheduled as completions.
   Instances are advanced lazily: only at their own events, when a request is
   assigned to them, when they emit a heartbeat, or when the RL hook needs the
   state of every instance.
1. *completion* at ``finish_s``: counted (the RL reward reads it), and
2. delivered to the view ``completion_delay_s`` later (default 0: at once).
3. *status delivery* to the view (``heartbeat_delay_s`` after emission).
4. *heartbeat* of one instance, every ``heartbeat_period_s`` (default 0.5 s, as
   the live worker). Instances beat with a phase drawn from the seeded RNG so
   they do not all report in the same instant (like independent workers) —
   this is what ``seed`` decides; engines and the router are deterministic.
5. *router tick* — the head of the router queue is re-offered to the policy
   ``router_tick_s`` (0.02 s, the paper's tick) after it answered WAIT.
6. *arrival* of the next workload request into the FIFO router queue (the
   requests are consumed from the sorted list, not the heap; at equal times
   every heap event goes first).

Only the head of the router queue is ever decided (as the paper's router). A
decision is needed when a request becomes the head at an arrival or after the
previous head was placed, and at every tick while it waits.

**Router replicas** (``SimConfig.replicas`` R > 1, ``phaser.bench.replicas``):
each request is decided by the replica its id hashes to, with that replica's
own view (``views[r]``) and policy (``run`` takes one policy per replica); a
replica's own assignment reaches its view at once and the others'
``replica_delay_s`` later (kind 5, *view assign*); completions and heartbeats
reach every view. A completion that overtakes its assignment at a replica is
remembered and the late assignment dropped, so no view leaks outstanding work.

Steppable for RL: ``next_decision()`` runs to the next decision and returns
``(job, view)`` (or ``None`` at the end); ``apply(action)`` places the head on
instance ``action`` or, with ``None``, keeps it waiting until the next tick.
``reward_inputs()`` reads what a per-step reward needs (see ``RewardInputs``).
``simulate`` runs a policy to the end and returns records + summary.
"""

from __future__ import annotations

import heapq
import math
import random
import time
import zlib
from collections import deque
from dataclasses import dataclass, field

from phaser.engine.instance import Instance, RequestRecord
from phaser.engine.profiles import LatencyProfile, get_profile
from phaser.errors import PhaserError
from phaser.types import Job, bucket_of

# event kinds, in tie-break order
_INST, _DONE, _VIEW_DONE, _STATUS, _BEAT, _VIEW_ASSIGN, _TICK = 0, 1, 2, 3, 4, 5, 6
_INF = math.inf


@dataclass(frozen=True)
class SimConfig:
    """Cluster and router settings of one simulation.

    ``profiles`` (one profile name per instance, heterogeneous allowed) wins over
    ``instances`` × ``profile``. After construction the three always agree:
    ``profiles`` is the instance list, ``instances == len(profiles)`` and
    ``profile`` is the common profile (``None`` for a mixed cluster), so a
    serialized config names the cluster that ran."""

    instances: int = 8
    profile: str | None = "a100-llama3-8b"
    profiles: tuple[str, ...] | None = None
    chunked_prefill: bool = False
    #: the engines' scheduling mode: mixed, vllm-v0, vllm-v1 (``phaser.engine.instance``)
    scheduler: str = "mixed"
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    router_tick_s: float = 0.02
    heartbeat_period_s: float = 0.5
    heartbeat_delay_s: float = 0.0
    completion_delay_s: float = 0.0
    #: router replicas (``ReplicaSet`` below): each request is decided by the replica its id
    #: hashes to (Kafka's keyed partitioning), with that replica's own view and policy; a
    #: replica sees the others' assignments ``replica_delay_s`` late
    replicas: int = 1
    replica_delay_s: float = 0.0
    #: the profiles the router is told, one per instance (its view plans with them), when they
    #: differ from what the engines run (``profiles``): a digital twin (``phaser.twin``) trains
    #: under the live router's beliefs and the fitted hardware. None: the engines' own
    told: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.profiles:
            names = tuple(self.profiles)
        else:
            if self.instances < 1:
                raise PhaserError(f"instances must be >= 1, got {self.instances}")
            if not self.profile:
                raise PhaserError("a cluster needs a profile name or a list of profiles")
            names = (self.profile,) * self.instances
        object.__setattr__(self, "profiles", names)
        object.__setattr__(self, "instances", len(names))
        object.__setattr__(self, "profile", names[0] if len(set(names)) == 1 else None)

    def profile_names(self) -> list[str]:
        return list(self.profiles)

    def validate(self) -> None:
        if not self.router_tick_s > 0:
            raise PhaserError(f"router tick must be > 0 s, got {self.router_tick_s}")
        if not self.heartbeat_period_s > 0:
            raise PhaserError(f"heartbeat period must be > 0 s, got {self.heartbeat_period_s}")
        if self.heartbeat_delay_s < 0 or self.completion_delay_s < 0:
            raise PhaserError("heartbeat and completion delays must be >= 0 s")
        if self.replicas < 1 or self.replica_delay_s < 0:
            raise PhaserError(f"replicas must be >= 1 and the replica delay >= 0 s, got {self.replicas}, "
                              f"{self.replica_delay_s}")
        for name in self.profile_names() + list(self.told or ()):
            get_profile(name)
        if self.told is not None and len(self.told) != self.instances:
            raise PhaserError(f"the router is told {len(self.told)} profiles for {self.instances} instances")


class NullPredictor:
    """Predicts nothing: 0 tokens, bucket 0 (used when no predictor is given)."""

    def predict(self, request) -> tuple[float, int]:
        return 0.0, 0


class OraclePredictor:
    """Predicts the true output length (an upper bound on what a predictor can do;
    for experiments and tests)."""

    def predict(self, request) -> tuple[float, int]:
        n = float(request.output_tokens or 0)
        return n, bucket_of(n)


@dataclass
class RewardInputs:
    """What a per-step RL reward needs, at virtual time ``now``."""

    now: float
    #: Σ over requests in the system (router queue included) of 1 − produced/expected
    #: (expected = the true output length; a training signal, never a policy input)
    remaining_fraction: float
    #: requests in the system (arrived, not finished)
    in_system: int
    #: completions since the previous ``reward_inputs()`` call
    completed: int


@dataclass
class SimResult:
    records: list[RequestRecord]
    summary: dict
    config: SimConfig
    seed: int
    policy: str = ""
    statuses: int = 0
    extra: dict = field(default_factory=dict)


class ClusterSim:
    def __init__(self, requests, config: SimConfig | None = None, predictor=None, seed: int = 0, view=None,
                 policy_name: str = ""):
        self.config = cfg = config or SimConfig()
        cfg.validate()
        self.profiles: list[LatencyProfile] = [get_profile(n) for n in cfg.profile_names()]
        self.n = len(self.profiles)
        self.instances = [Instance(i, p, chunked_prefill=cfg.chunked_prefill,
                                   max_num_batched_tokens=cfg.max_num_batched_tokens,
                                   max_num_seqs=cfg.max_num_seqs, scheduler=cfg.scheduler)
                          for i, p in enumerate(self.profiles)]
        from phaser.cluster.view import ClusterView as ClusterViewOf

        told = [get_profile(n) for n in cfg.told] if cfg.told else self.profiles
        if view is None:
            view = ClusterViewOf(told)
        self.view = view
        #: one view per router replica (the first is ``view``); see ``SimConfig.replicas``
        self.views = [view] + [ClusterViewOf(told) for _ in range(cfg.replicas - 1)]
        self._early: list[set[str]] = [set() for _ in self.views]  # completions seen before the assignment
        self.pending_replica = 0
        self.predictor = predictor or NullPredictor()
        self.seed = seed
        self.policy_name = policy_name
        reqs = list(requests)
        if any(reqs[i].arrival_s > reqs[i + 1].arrival_s for i in range(len(reqs) - 1)):
            reqs.sort(key=lambda r: r.arrival_s)
        self._reqs = reqs
        self._next_arrival = 0
        self.now = 0.0
        self.queue: deque[tuple[Job, object]] = deque()  # (job, request)
        self._heap: list = []
        self._seq = 0
        self._ver = [0] * self.n
        self._due = [_INF] * self.n  # time of each instance's pending event
        self._need_decision = False
        self._tick_pending = False
        self._pending: tuple[Job, object] | None = None
        self._assigned: dict[str, tuple[float, int]] = {}  # id -> (router_wait, instance)
        self._output: dict[str, int] = {}
        self._seen: set[str] = set()
        self.records: list[RequestRecord] = []
        #: requests the chosen instance can never serve (longer than its context or
        #: KV cache): (id, instance, reason), like a worker's ``rejected`` completion
        self.rejected: list[tuple[str, int, str]] = []
        self._completed_since = 0
        self._in_system = 0
        self.statuses = 0
        self.decisions = 0
        self.waits = 0
        rng = random.Random(seed)
        period = cfg.heartbeat_period_s
        t0 = reqs[0].arrival_s if reqs else 0.0
        for i in range(self.n):
            self._push(t0 + rng.random() * period, _BEAT, i)

    # ---------------------------------------------------------------- events
    def _push(self, t: float, kind: int, payload) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, payload))

    def _reschedule(self, i: int) -> None:
        te = self.instances[i].next_event_time()
        if te == self._due[i]:
            return  # the pending event stays valid
        self._ver[i] += 1
        self._due[i] = te
        if te < _INF:
            self._push(te, _INST, (i, self._ver[i]))

    def _collect(self, recs: list[RequestRecord]) -> None:
        now = self.now
        for r in recs:  # finish_s >= now always holds (next_event_time is a lower bound); max() for safety
            self._push(r.finish_s if r.finish_s > now else now, _DONE, r)

    def _drained(self) -> bool:
        return (self._next_arrival >= len(self._reqs) and not self.queue and self._pending is None
                and all(inst.idle() for inst in self.instances))

    def _process(self, t: float, kind: int, payload) -> None:
        self.now = t
        if kind == _INST:
            i, ver = payload
            if ver != self._ver[i]:
                return
            self._due[i] = _INF
            self._collect(self.instances[i].advance(t))
            self._reschedule(i)
        elif kind == _DONE:
            rec = payload
            wait, _ = self._assigned.pop(rec.id)
            rec.router_wait_s = wait
            self.records.append(rec)
            self._completed_since += 1
            self._in_system -= 1
            self._output.pop(rec.id, None)
            d = self.config.completion_delay_s
            if d > 0:
                self._push(t + d, _VIEW_DONE, rec)
            else:
                self._view_done(rec, t)
        elif kind == _VIEW_DONE:
            self._view_done(payload, t)
        elif kind == _STATUS:
            for v in self.views:
                v.on_status(payload, t)
        elif kind == _VIEW_ASSIGN:  # another replica's decision reaches this replica's view
            r, job, i = payload
            if job.id in self._early[r]:
                self._early[r].discard(job.id)  # it finished before this replica heard of it
            else:
                self.views[r].on_assign(job, i, t)
        elif kind == _BEAT:
            i = payload
            inst = self.instances[i]
            self._collect(inst.advance(t))
            self._reschedule(i)
            st = inst.status(t)
            self.statuses += 1
            d = self.config.heartbeat_delay_s
            if d > 0:
                self._push(t + d, _STATUS, st)
            else:
                for v in self.views:
                    v.on_status(st, t)
            if not self._drained():
                self._push(t + self.config.heartbeat_period_s, _BEAT, i)
        elif kind == _TICK:
            self._tick_pending = False
            if self.queue:
                self._need_decision = True

    def _view_done(self, rec, t: float) -> None:
        views = self.views
        if len(views) == 1:
            views[0].on_complete(rec.id, rec.instance, t)
            return
        for r, v in enumerate(views):
            if v.instance_of(rec.id) is not None:
                v.on_complete(rec.id, rec.instance, t)
            else:  # this replica has not seen the assignment yet: drop it when it comes
                self._early[r].add(rec.id)

    def replica_of(self, request_id: str) -> int:
        """The replica that decides ``request_id`` (a stable hash, as Kafka partitions by key)."""
        n = len(self.views)
        return 0 if n == 1 else zlib.crc32(request_id.encode()) % n

    def _arrive(self) -> None:
        req = self._reqs[self._next_arrival]
        self._next_arrival += 1
        self.now = req.arrival_s
        if req.id in self._seen:
            raise PhaserError(f"duplicate request id {req.id!r} in the workload")
        self._seen.add(req.id)
        tokens, bucket = self.predictor.predict(req)
        job = Job.from_request(req, tokens, bucket)
        self.queue.append((job, req))
        self._in_system += 1
        self._output[req.id] = req.output_tokens or 1
        if len(self.queue) == 1 and not self._tick_pending:
            self._need_decision = True

    # ------------------------------------------------------------- stepping
    def next_decision(self):
        """Run to the next routing decision; ``(job, view)`` or ``None`` when done."""
        if self._pending is not None:
            return self._pending[0], self.view
        heap = self._heap
        reqs = self._reqs
        n_reqs = len(reqs)
        while True:
            if self._need_decision and self.queue:
                self._need_decision = False
                r = self.pending_replica = self.replica_of(self.queue[0][0].id)
                view = self.views[r]
                view.advance_to(self.now)
                view.router_queue_len = len(self.queue)
                self._pending = self.queue[0]
                return self._pending[0], view
            t_arr = reqs[self._next_arrival].arrival_s if self._next_arrival < n_reqs else _INF
            if heap and heap[0][0] <= t_arr:
                t, kind, _, payload = heapq.heappop(heap)
                self._process(t, kind, payload)
            elif t_arr < _INF:
                self._arrive()
            else:
                return None

    def apply(self, action: int | None) -> None:
        """Place the pending head on instance ``action``, or WAIT (``None``)."""
        if self._pending is None:
            raise RuntimeError("apply() without a pending decision; call next_decision() first")
        job, req = self._pending
        self._pending = None
        self.decisions += 1
        t = self.now
        if action is None:
            self.waits += 1
            if not self._tick_pending:
                self._tick_pending = True
                self._push(t + self.config.router_tick_s, _TICK, None)
            return
        i = int(action)
        if not 0 <= i < self.n:
            raise ValueError(f"policy chose instance {action!r}; the cluster has {self.n}")
        self.queue.popleft()
        inst = self.instances[i]
        why = inst.refusal(req)
        if why is not None:  # rejected at once, as a live worker does: never queued, the view never holds it
            self.rejected.append((req.id, i, why))
            self._in_system -= 1
            self._output.pop(req.id, None)
            self._need_decision = bool(self.queue)
            return
        self._collect(inst.advance(t))
        inst.add(req, t)
        self._assigned[req.id] = (t - req.arrival_s, i)
        r = self.pending_replica
        self.views[r].on_assign(job, i, t)  # the deciding replica knows at once
        if len(self.views) > 1:
            d = self.config.replica_delay_s
            for o in range(len(self.views)):
                if o != r:
                    if d > 0:
                        self._push(t + d, _VIEW_ASSIGN, (o, job, i))
                    else:
                        self.views[o].on_assign(job, i, t)
        self._reschedule(i)
        self._need_decision = bool(self.queue)

    def run(self, policy) -> None:
        """Run ``policy`` until every request has finished; with replicas, ``policy`` is a
        list of one policy per replica (each decides its own requests with its own view)."""
        nd, ap = self.next_decision, self.apply
        if isinstance(policy, (list, tuple)):
            if len(policy) != len(self.views):
                raise PhaserError(f"{len(self.views)} router replicas need {len(self.views)} policies, got {len(policy)}")
            decides = [p.decide for p in policy]
            while (d := nd()) is not None:
                ap(decides[self.pending_replica](d[0], d[1]))
            return
        if len(self.views) > 1:
            raise PhaserError("router replicas need one policy per replica (a list)")
        decide = policy.decide
        while (d := nd()) is not None:
            ap(decide(d[0], d[1]))

    # -------------------------------------------------------------- RL hooks
    def reward_inputs(self) -> RewardInputs:
        """State for a per-step reward at ``now`` (advances every instance to ``now``)."""
        t = self.now
        rem = float(len(self.queue))
        out = self._output
        for i, inst in enumerate(self.instances):
            self._collect(inst.advance(t))
            self._reschedule(i)
            for rid, gen in inst.in_flight():
                rem += 1.0 - gen / out[rid]
        c, self._completed_since = self._completed_since, 0
        return RewardInputs(now=t, remaining_fraction=rem, in_system=self._in_system, completed=c)

    def summary_dict(self, wall_seconds: float = 0.0) -> dict:
        from phaser.sim.metrics import summarize

        out = summarize(self.records, wall_seconds=wall_seconds, preemptions=self.preemptions)
        out["rejected"] = len(self.rejected)
        return out

    @property
    def preemptions(self) -> int:
        return sum(inst.preemptions for inst in self.instances)


def simulate(requests, policy, config: SimConfig | None = None, predictor=None, seed: int = 0,
             view=None) -> SimResult:
    """Run ``policy`` over ``requests`` (``protos.Request``, oracle lengths set)
    on the configured cluster to the end. Deterministic for a given seed (and a
    deterministic policy)."""
    from phaser.sim.metrics import summarize

    w0 = time.perf_counter()
    first = policy[0] if isinstance(policy, (list, tuple)) else policy
    sim = ClusterSim(requests, config, predictor=predictor, seed=seed, view=view,
                     policy_name=getattr(first, "name", ""))
    sim.run(policy)
    wall = time.perf_counter() - w0
    recs = sorted(sim.records, key=lambda r: (r.arrival_s, r.id))
    summary = summarize(recs, wall_seconds=wall, preemptions=sim.preemptions)
    summary["decisions"] = sim.decisions
    summary["waits"] = sim.waits
    summary["rejected"] = len(sim.rejected)
    return SimResult(records=recs, summary=summary, config=sim.config, seed=seed, policy=sim.policy_name,
                     statuses=sim.statuses)
