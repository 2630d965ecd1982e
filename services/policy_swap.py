"""Router-side policy lifecycle: hot swap, canary split, guard, exploration.

The router asks ``PolicySwap.decide(job, view, now_s)`` instead of a bare
policy. Behind it sit at most two loaded versions — the *incumbent* and a
*canary* — and a ``phaser.versions.guard.CanaryGuard`` judging the canary.

Decisions:

* **No pause, no double routing.** A published version is loaded and verified
  in a background thread (``phaser.rl.checkpoint``: checksum, instance count,
  feature spec). The router thread only ever reads an immutable ``_Slots``
  snapshot and replaces it by one attribute assignment in ``poll()``, so every
  request is decided exactly once, by exactly one version, and nothing waits
  for a load.
* **Refusals keep the current policy**: a version that is missing, corrupt,
  tampered (its checksum differs from the published one or fails
  verification), or built for another instance count / feature spec yields a
  ``PolicyUpdate(kind="refused")`` with the reason, and serving is unchanged.
* **Canary first**: a version the trainer publishes serves ``share`` of the
  traffic (by request-id hash) until the guard promotes or rolls it back;
  a promoted version then serves on probation (``ProbationGuard``: compared
  with the served mean E2E from before its canary, over the last
  ``RECENT`` completions) and is rolled back to the previous version if it
  degrades at full traffic.
  While a canary runs, only the newest later publication is kept waiting; it
  starts when the current canary is decided (otherwise a trainer that publishes
  faster than a canary can be judged would never get anything promoted).
* **Operators win**: ``promoted``/``pinned``/``rolled_back`` events that did not
  come from this guard (``phaser policy …``) switch the incumbent at once, no
  canary; while pinned, trainer publications are ignored. Events are
  idempotent, so the router's own promotions echoed back by Kafka are no-ops.
* **Exploration is bounded**: with probability ``explore`` (≤ ``MAX_EXPLORE``)
  a uniformly random instance replaces the policy's pick, so online learning
  sees alternatives; ``freeze`` serves without learning (no exploration, no
  new trainer versions; operator actions still apply).
* **Every decision carries features** — the policy's own ``last_features`` if
  it has them, else the RL encoder's — so the trainer can learn off-policy from
  any served policy, round robin included.
"""

from __future__ import annotations

import logging
import sys
import random
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable

from phaser.errors import PhaserError
from phaser.rl import checkpoint as ckpt
from phaser.rl.features import Encoder, FeatureSpec
from phaser.versions.guard import CanaryGuard, GuardConfig, ProbationGuard
from phaser.versions.store import CheckpointStore
from protos.messages import Completion, PolicyUpdate

log = logging.getLogger("phaser.policy_swap")

#: largest --explore accepted: beyond a quarter of the traffic routed at random
#: the "online" policy is mostly noise and production latency suffers.
MAX_EXPLORE = 0.25
#: default exploration: 2% random picks (one request in 50).
DEFAULT_EXPLORE = 0.02


@dataclass(frozen=True)
class Served:
    """A loaded, verified policy version."""

    version: int
    policy: object  # phaser.policies.base.Policy
    checksum: str = ""
    path: str = ""


@dataclass(frozen=True)
class Decision:
    instance: int | None  # None = WAIT
    policy: str
    version: int
    features: list[float] | None
    action: int
    explored: bool = False


@dataclass(frozen=True)
class _Slots:
    incumbent: Served
    canary: Served | None = None
    guard: CanaryGuard | None = None
    pinned: bool = False
    probation: ProbationGuard | None = None
    previous: Served | None = None  # what a failed probation goes back to


def load_version(path: str, n_instances: int, seed: int = 0) -> Served:
    """Load and verify a checkpoint version into a servable RL policy.
    PhaserError (with the reason) if it is missing, corrupt, tampered or incompatible."""
    from phaser.rl.policy import RLPolicy

    c = ckpt.load_checkpoint(path)
    policy = RLPolicy.from_checkpoint(c, n_instances=n_instances, seed=seed)  # checks instance count + spec
    return Served(version=c.version, policy=policy, checksum=c.checksum, path=str(c.path))


class PolicySwap:
    def __init__(self, incumbent: Served, n_instances: int, *, guard: GuardConfig | None = None,
                 explore: float = DEFAULT_EXPLORE, freeze: bool = False, seed: int = 0,
                 store: CheckpointStore | None = None,
                 loader: Callable[[str, int], Served] | None = None):
        if not 0.0 <= explore <= MAX_EXPLORE:
            raise PhaserError(f"--explore must be in [0, {MAX_EXPLORE}], got {explore}")
        self.n = n_instances
        self.guard_config = guard or GuardConfig()
        self.explore = 0.0 if freeze else explore
        self.freeze = freeze
        self.store = store
        self._loader = loader or (lambda p, n: load_version(p, n, seed))
        self._rng = random.Random(seed)
        self._encoder = Encoder(FeatureSpec(n_instances))
        self._slots = _Slots(incumbent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-load")
        self._loading: tuple[PolicyUpdate, Future] | None = None
        self._queued: PolicyUpdate | None = None  # newest publication waiting for the canary slot
        self._events: list[PolicyUpdate] = []
        #: E2E of the latest completions while no canary or probation runs: the baseline
        self._recent: deque[float] = deque(maxlen=self.guard_config.promote_after)
        #: version -> requests it decided (for --json summaries)
        self.served_counts: dict[int, int] = {}
        #: (version, wall-free stack time) of the first decision each version made
        self.first_decision_s: dict[int, float] = {}

    # ------------------------------------------------------------ serving
    @property
    def incumbent(self) -> Served:
        return self._slots.incumbent

    @property
    def canary(self) -> Served | None:
        return self._slots.canary

    @property
    def pinned(self) -> bool:
        return self._slots.pinned

    @property
    def loading(self) -> bool:
        """A version is being loaded in the background (the router polls more often)."""
        return self._loading is not None

    def load_finished(self) -> bool:
        """The background load (if any) is done and ``poll`` will install or refuse it."""
        return self._loading is None or self._loading[1].done()

    def decide(self, job, view, now_s: float) -> Decision:
        slots = self._slots  # one read: the whole decision uses one snapshot
        served = slots.incumbent
        if slots.canary is not None and slots.guard.routes_to_canary(job.id):
            served = slots.canary
        pol = served.policy
        choice = pol.decide(job, view)
        if choice is None:  # WAIT: nothing assigned, nothing counted
            return Decision(None, pol.name, served.version, None, -1)
        feats = getattr(pol, "last_features", None)
        if feats is None:
            feats = self._encoder(job, view)
        explored = False
        if self.explore > 0.0 and self._rng.random() < self.explore:
            choice = self._rng.randrange(self.n)
            explored = True
        if slots.guard is not None:
            slots.guard.on_assign(job.id, served.version, job.arrival_s)
        if slots.probation is not None:
            slots.probation.on_assign(job.id, served.version, job.arrival_s)
        self.served_counts[served.version] = self.served_counts.get(served.version, 0) + 1
        self.first_decision_s.setdefault(served.version, now_s)
        return Decision(int(choice), pol.name, served.version, [float(x) for x in feats], int(choice), explored)

    def on_completion(self, c: Completion) -> None:
        s = self._slots
        if s.guard is not None:
            s.guard.on_complete(c.request_id, c.e2e_s)
        elif s.probation is not None:
            s.probation.on_complete(c.request_id, c.e2e_s)
        else:
            self._recent.append(c.e2e_s)

    # ---------------------------------------------------------- lifecycle
    def on_update(self, upd: PolicyUpdate, now_s: float) -> None:
        """React to a ``policy-updates`` message (loads happen in the background)."""
        s = self._slots
        if upd.kind == "published":
            if self.freeze or s.pinned:
                log.info("ignoring published v%d (%s)", upd.version, "frozen" if self.freeze else "pinned")
                return
            if upd.version <= s.incumbent.version or (s.canary and upd.version <= s.canary.version):
                return  # old news (a replay after restart)
            if s.canary is not None or s.probation is not None or self._loading is not None:
                self._queued = upd
                return
            self._start_load(upd)
        elif upd.kind in ("promoted", "pinned"):
            pin = upd.kind == "pinned"
            if upd.version == s.incumbent.version:
                if pin != s.pinned:
                    self._slots = replace(s, pinned=pin)
                return
            if s.canary is not None and upd.version == s.canary.version:
                self._slots = _Slots(s.canary, pinned=pin)
                return
            self._start_load(upd)
        elif upd.kind == "rolled_back":
            if s.canary is not None and upd.version == s.canary.version:
                self._slots = _Slots(s.incumbent, pinned=s.pinned)
            elif upd.version == s.incumbent.version and upd.path:
                # operator rollback of the serving version: the event's path is the version to serve now
                self._start_load(upd)
        # "canary" and "refused" are informational

    def _start_load(self, upd: PolicyUpdate) -> None:
        if self._loading is not None and upd.kind == "published":
            self._queued = upd
            return
        # an operator action replaces whatever was loading (its result is dropped)
        self._loading = (upd, self._pool.submit(self._loader, upd.path, self.n))

    def poll(self, now_s: float) -> list[PolicyUpdate]:
        """Install finished loads, run the guard; returns events to publish."""
        if self._loading is not None and self._loading[1].done():
            upd, fut = self._loading
            self._loading = None
            self._install(upd, fut, now_s)
            self._start_queued(now_s)
        s = self._slots
        if s.guard is not None:
            verdict = s.guard.evaluate(now_s)
            if verdict is not None:
                self._decide_canary(verdict, now_s)
        elif s.probation is not None:
            verdict = s.probation.evaluate(now_s)
            if verdict is not None:
                self._end_probation(verdict, now_s)
        out, self._events = self._events, []
        return out

    def _install(self, upd: PolicyUpdate, fut: Future, now_s: float) -> None:
        s = self._slots
        try:
            served = fut.result()
            if upd.checksum and served.checksum != upd.checksum:
                raise PhaserError(f"checksum {served.checksum[:19]}… differs from the published {upd.checksum[:19]}…")
        except PhaserError as e:
            reason = f"v{upd.version} refused, still serving v{s.incumbent.version}: {e}"
            log.warning(reason)
            self._emit("refused", upd.version, now_s, reason, path=upd.path, checksum=upd.checksum)
            return
        except Exception as e:  # a loader bug must not take the router down either
            reason = f"v{upd.version} refused, still serving v{s.incumbent.version}: {e.__class__.__name__}: {e}"
            log.warning(reason)
            self._emit("refused", upd.version, now_s, reason, path=upd.path, checksum=upd.checksum)
            return
        if upd.kind == "published":
            baseline = (sum(self._recent) / len(self._recent)
                        if len(self._recent) >= self.guard_config.min_samples else None)
            guard = CanaryGuard(s.incumbent.version, served.version, now_s, self.guard_config, baseline_e2e_s=baseline)
            self._slots = _Slots(s.incumbent, served, guard, s.pinned)
            self._emit("canary", served.version, now_s,
                       f"v{served.version} serves {100 * self.guard_config.share:.0f}% of requests "
                       f"against v{s.incumbent.version}", path=served.path, checksum=served.checksum,
                       stats={"share": self.guard_config.share})
        else:  # operator promote / pin / rollback: serve it now, no canary
            self._slots = _Slots(served, pinned=(upd.kind == "pinned") or (upd.kind == "rolled_back" and s.pinned))

    def _decide_canary(self, verdict, now_s: float) -> None:
        s = self._slots
        if verdict.kind == "promoted":
            probation = None
            if s.guard.baseline is not None:
                probation = ProbationGuard(s.canary.version, s.incumbent.version, s.guard.baseline, now_s,
                                           self.guard_config)
            self._slots = _Slots(s.canary, pinned=s.pinned, probation=probation,
                                 previous=s.incumbent if probation else None)
            if self.store is not None:
                try:
                    self.store.promote(s.canary.version, verdict.reason)
                except PhaserError as e:  # the store is advisory for the router; keep serving
                    log.warning("could not record promotion in %s: %s", self.store.root, e)
            self._emit("promoted", s.canary.version, now_s, verdict.reason, path=s.canary.path,
                       checksum=s.canary.checksum, stats=verdict.stats)
        else:
            self._slots = _Slots(s.incumbent, pinned=s.pinned)
            self._emit("rolled_back", s.canary.version, now_s, verdict.reason, path=s.incumbent.path,
                       checksum=s.incumbent.checksum, stats=dict(verdict.stats, to_version=float(s.incumbent.version)))
        log.info("%s v%d: %s", verdict.kind, s.canary.version, verdict.reason)
        self._start_queued(now_s)

    def _start_queued(self, now_s: float) -> None:
        s = self._slots
        if self._queued is not None and self._loading is None and s.canary is None and s.probation is None:
            nxt, self._queued = self._queued, None
            self.on_update(nxt, now_s)

    def _end_probation(self, verdict, now_s: float) -> None:
        s = self._slots
        if verdict.kind == "rolled_back":
            prev = s.previous
            self._slots = _Slots(prev, pinned=s.pinned)
            if self.store is not None:
                try:
                    if prev.version in self.store.versions():
                        self.store.rollback(verdict.reason, to=prev.version)
                    else:  # the fallback policy (version 0) is not a store version
                        self.store.clear(verdict.reason)
                except PhaserError as e:
                    log.warning("could not record rollback in %s: %s", self.store.root, e)
            self._emit("rolled_back", s.incumbent.version, now_s, verdict.reason, path=prev.path,
                       checksum=prev.checksum, stats=verdict.stats)
        else:
            self._slots = replace(s, probation=None, previous=None)
        log.info("probation of v%d: %s", s.incumbent.version, verdict.reason)
        self._start_queued(now_s)

    def _emit(self, kind: str, version: int, now_s: float, reason: str, path: str = "", checksum: str = "",
              stats: dict[str, float] | None = None) -> None:
        clean = {k: float(v) for k, v in (stats or {}).items() if v == v}  # drop NaN (no samples yet)
        self._events.append(PolicyUpdate(kind=kind, version=version, path=path, checksum=checksum,
                                         reason=reason, ts_s=max(0.0, now_s), stats=clean))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def incumbent_from(store: CheckpointStore | None, checkpoint: str | None, fallback, n_instances: int,
                   seed: int = 0) -> tuple[Served, bool]:
    """What the router serves at start: ``--checkpoint`` if given, else the
    store's current version, else ``fallback`` (a heuristic policy, version 0).
    Returns (served, pinned)."""
    if checkpoint:
        return load_version(checkpoint, n_instances, seed), False
    if store is not None:
        version, served, notes = store.usable_current(lambda v: load_version(str(store.path_of(v)), n_instances, seed))
        for line in notes:  # a corrupt or missing current version must not stop the router: say so, fall back
            print(f"router: {line}", file=sys.stderr)
        if served is not None:
            if notes:
                print(f"router: serving v{version} instead", file=sys.stderr)
            try:
                pinned = store.pointer().pinned and store.pointer().version == version
            except PhaserError:
                pinned = False
            return served, pinned
        if notes:
            print(f"router: no usable version in the store; serving {getattr(fallback, 'name', fallback)} until one is published",
                  file=sys.stderr)
    return Served(version=0, policy=fallback), False


def attach(core, *, store: str | None, canary_share: float = GuardConfig.share,
           rollback_threshold: float = GuardConfig.threshold, min_samples: int = GuardConfig.min_samples,
           promote_after: int = GuardConfig.promote_after, explore: float = DEFAULT_EXPLORE,
           freeze: bool = False, seed: int = 0) -> PolicySwap:
    """Give a ``services.router.RouterCore`` hot swapping: its ``policy`` becomes
    the fallback (version 0) used until the store has a current version."""
    n = len(core.view.instances)
    st = CheckpointStore(store) if store else None
    served, pinned = incumbent_from(st, None, core.policy, n, seed)
    guard = GuardConfig(share=canary_share, threshold=rollback_threshold, min_samples=min_samples,
                        promote_after=max(promote_after, min_samples))
    swap = PolicySwap(served, n, guard=guard, explore=explore, freeze=freeze, seed=seed, store=st)
    if pinned:
        swap._slots = replace(swap._slots, pinned=True)
    core.swap = swap
    return swap
