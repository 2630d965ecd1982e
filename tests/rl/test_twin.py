"""The digital twin (``phaser.twin``): it recovers hardware the router was not told
about from completions alone, and only a candidate that wins in it is a winner."""

from __future__ import annotations

import pytest

from load_generator import load_workload
from phaser.bench.runner import sim_config
from phaser.bench.scenarios import Scenario
from phaser.policies import make_policy
from phaser.predictor import CrossFitted
from phaser.sim import simulate
from phaser.twin import MAX_FIT_ERROR, MIN_WINDOW, Twin, train_candidate

TOLD = ("a100-llama3-8b",) * 4
TRUTH = ("a100-llama3-8b",) * 2 + ("a100-llama3-8b@x1.6",) * 2  # half the instances 1.6x slower


def _live(n: int = 600, rate: float = 14.0, seed: int = 3, truth: tuple = TRUTH):
    """What the live stack would have streamed: each request, and its completion from the true hardware."""
    reqs = list(load_workload("azure-conv", n=n, rate=rate, seed=seed))
    sc = Scenario("truth", "azure-conv", 4, truth[0], rate, n, profiles=truth)
    res = simulate(reqs, make_policy("round-robin", 4, seed), sim_config(sc), predictor=CrossFitted(reqs), seed=seed)
    by_id = {r.id: r for r in reqs}
    return [(by_id[r.id], r.to_completion()) for r in res.records]


def test_the_fit_recovers_the_slower_half_within_ten_percent():
    twin = Twin(TOLD, window=2000)
    for req, c in _live():
        twin.observe(req, c)
    scales = twin.fit()
    assert scales[0] == pytest.approx(1.0, rel=0.1) and scales[1] == pytest.approx(1.0, rel=0.1)
    assert scales[2] == pytest.approx(1.6, rel=0.1) and scales[3] == pytest.approx(1.6, rel=0.1)
    assert twin.profiles()[2].startswith("a100-llama3-8b@x")
    assert all(max(e) < MAX_FIT_ERROR for e in twin.fit_errors) and twin.fit_problem() == ""


def test_hardware_one_time_scale_cannot_explain_is_a_poor_fit_and_trains_nothing():
    """Half the instances are H100s: decode and prefill are faster by different factors, so the
    scale that matches their TBT misses their TTFT (by 80 %, 2026-12-03) and the twin refuses."""
    twin = Twin(TOLD, window=2000)
    for req, c in _live(truth=TOLD[:2] + ("h100-llama3-8b",) * 2):
        twin.observe(req, c)
    res = train_candidate(twin, lambda n, s: make_policy("round-robin", n, s))
    assert res.outcome == "fit" and not res.wins and res.params is None
    assert "instance 2" in res.reason and "TTFT" in res.reason
    assert twin.fit_errors[2][1] > MAX_FIT_ERROR and twin.fit_errors[0][1] < MAX_FIT_ERROR


def test_the_twin_s_router_is_told_what_the_live_router_is_told():
    """The engines run the fitted speed; the simulated router plans with the profile the live
    router was told, so a candidate learns from the features it will be served with."""
    from phaser.sim import ClusterSim

    twin = Twin(TOLD)
    sim = ClusterSim([r for r, _ in _live(n=20)], sim_config(twin.scenario([1.0, 1.0, 1.6, 1.6])))
    assert [i.profile.name for i in sim.view.instances] == list(TOLD)
    assert sim.instances[2].profile.name == "a100-llama3-8b@x1.6" and sim.instances[0].profile.name == TOLD[0]


def test_the_window_keeps_the_newest_and_ignores_what_was_not_served():
    twin = Twin(TOLD, window=50)
    live = _live(n=120)
    for req, c in live:
        twin.observe(req, c)
    assert len(twin) == 50
    reqs = twin.requests()
    assert reqs[0].arrival_s == 0.0 and all(a.arrival_s <= b.arrival_s for a, b in zip(reqs, reqs[1:]))
    req, c = live[0]
    twin.observe(req, c.model_copy(update={"status": "rejected", "reason": "too long"}))
    assert len(twin) == 50 and req.id not in {r.id for r in twin.requests()}


def test_a_candidate_trained_in_the_twin_beats_round_robin_on_held_out_replays():
    twin = Twin(TOLD, window=2000)
    for req, c in _live():
        twin.observe(req, c)
    res = train_candidate(twin, lambda n, s: make_policy("round-robin", n, s), segments=6, rounds=1,
                          labels_per_segment=80, updates=800)
    assert res.held_out == 3 and res.params is not None
    assert res.scales[2] > 1.3  # it trained on what the hardware is, not on what the router was told
    assert res.wins and res.gain_pct > 0.5, res.reason


def test_too_small_a_window_is_no_candidate():
    twin = Twin(TOLD)
    for req, c in _live(n=20):
        twin.observe(req, c)
    res = train_candidate(twin, lambda n, s: make_policy("round-robin", n, s))
    assert not res.wins and res.params is None and "requests in the window" in res.reason
    assert res.outcome == "window"


def test_the_twin_refuses_a_candidate_that_loses_to_the_incumbent(tmp_path):
    """A candidate fitted for one step (near its random initial weights) against workload-aware:
    it loses in held-out replay, so the trainer publishes nothing and says why, in its metrics."""
    from prometheus_client import generate_latest

    from policy_trainer.service import build_core
    from services.metrics import Metrics
    from services.metrics.trainer import trainer_metrics

    core = build_core(str(tmp_path / "store"), 4, None, 0, publish_every_updates=500, publish_every_s=30.0,
                      freeze=False, settle_s=60.0)
    core.twin = Twin(TOLD, window=2000)
    for req, c in _live():
        core.twin.observe(req, c)
    res = train_candidate(core.twin, lambda n, s: make_policy("workload-aware", n, s), segments=4, rounds=1,
                          labels_per_segment=10, updates=1)
    assert res.outcome == "lost" and not res.wins and res.gain_pct < 0 and res.held_out == 2, res.reason
    assert core.twin_publish(res, 10.0) is None
    st = core.stats()
    assert st["twin_rounds"] == 1 and st["twin_wins"] == 0 and st["twin_outcome_lost"] == 1 and st["published"] == 0
    m = Metrics("trainer-test")
    trainer_metrics(m, core)
    text = generate_latest(m.registry).decode()
    assert 'phaser_trainer_twin_rounds_total{outcome="lost"} 1.0' in text
    assert 'phaser_trainer_twin_rounds_total{outcome="won"} 0.0' in text
    assert 'phaser_trainer_twin_last_info{outcome="lost",reason="candidate -' in text
    assert 'phaser_trainer_twin_fit_error{instance="2",metric="ttft_p50"}' in text


def test_a_due_round_with_too_small_a_window_is_counted_not_run(tmp_path):
    from policy_trainer.service import build_core

    core = build_core(str(tmp_path / "store"), 4, None, 0, publish_every_updates=500, publish_every_s=30.0,
                      freeze=False, settle_s=60.0)
    core.twin = Twin(TOLD, window=2000)
    for req, c in _live(n=MIN_WINDOW // 2):
        core.twin.observe(req, c)
    assert not core.twin_due(0.0)          # arms the timer
    assert not core.twin_due(1e9)          # due, but the window is too small: counted
    assert core.twin_outcomes == {"window": 1} and core.twin_last_outcome == "window"
    assert "requests in the window" in core.twin_last


def test_the_trainer_s_twin_round_publishes_a_winner_the_router_can_serve(tmp_path):
    """TrainerCore with ``--twin-profile``: joined pairs fill the window, the round the child process
    runs (``twin_round``) is called here directly, and a winner becomes a servable version."""
    import protos
    from phaser.rl.policy import RLPolicy
    from phaser.rl.checkpoint import load_checkpoint
    from policy_trainer.service import build_core, twin_round

    core = build_core(str(tmp_path / "store"), 4, None, 0, publish_every_updates=500, publish_every_s=30.0,
                      freeze=False, settle_s=60.0)
    core.twin = Twin(TOLD, window=2000)
    for req, c in _live():
        core.on_message(protos.Assignment(request=req, instance=c.instance, policy="round-robin", policy_version=0,
                                          decided_s=req.arrival_s, router_wait_s=0.0, predicted_tokens=100.0,
                                          predicted_bucket=0, action=-1), c.arrival_s)
        core.on_message(c, c.finish_s)
    assert len(core.twin) == 600
    assert core.step(1e6, 1e6) is None  # with the twin, no online gradient publication
    assert not core.twin_due(0.0) and core.twin_due(1e9)  # due after --twin-every-s
    twin, incumbent, k = core.twin_job()
    assert incumbent == {"policy": "round-robin"}  # what the router served
    res = twin_round(twin, incumbent, k)
    upd = core.twin_publish(res, 10.0)
    assert res.wins and upd is not None and upd.kind == "published", res.reason
    assert core.twin.scales[2] > 1.3 and core.stats()["twin_wins"] == 1
    ck = load_checkpoint(upd.path)
    assert ck.variant == "rl-families" and ck.metadata["twin"]["held_out"] == res.held_out
    assert RLPolicy.from_checkpoint(ck, 4).encoder.spec.version == 3
    # the fit held: the routers are told the fitted hardware, once, and the twin's router believes it
    told = core.twin_profiles_update(res, 11.0)
    assert told.kind == "profiles" and told.profiles[0] == TOLD[0] and told.profiles[2].startswith("a100-llama3-8b@x1.")
    assert core.twin.told == tuple(told.profiles) and core.twin.scenario().told == tuple(told.profiles)
    assert core.twin_profiles_update(res, 12.0) is None  # nothing moved
    assert protos.decode("policy-updates", protos.encode(told)) == told
    # until the router serves the winner, round robin is still the incumbent; then the winner is
    assert core.twin_job()[1] == {"policy": "round-robin"}
    for req, c in _live(n=300, seed=4):
        core.on_message(protos.Assignment(request=req, instance=c.instance, policy="rl-families",
                                          policy_version=upd.version, decided_s=req.arrival_s, router_wait_s=0.0,
                                          predicted_tokens=100.0, predicted_bucket=0, action=c.instance), c.arrival_s)
    inc = core.twin_job()[1]
    assert inc["version"] == 3 and inc["store_version"] == upd.version and inc["arch"] == "shared"
    core._twin_incumbent = None  # a restarted trainer reads the served version from its store
    inc = core.twin_job()[1]
    assert inc["store_version"] == upd.version and set(inc["params"]) == set(res.params)
