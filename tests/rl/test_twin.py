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
from phaser.twin import Twin, train_candidate

TOLD = ("a100-llama3-8b",) * 4
TRUTH = ("a100-llama3-8b",) * 2 + ("a100-llama3-8b@x1.6",) * 2  # half the instances 1.6x slower


def _live(n: int = 600, rate: float = 14.0, seed: int = 3):
    """What the live stack would have streamed: each request, and its completion from the true hardware."""
    reqs = list(load_workload("azure-conv", n=n, rate=rate, seed=seed))
    sc = Scenario("truth", "azure-conv", 4, TRUTH[0], rate, n, profiles=TRUTH)
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
    res = twin_round(twin, incumbent, k)  # the incumbent: the from-scratch network's random weights
    upd = core.twin_publish(res, 10.0)
    assert res.wins and upd is not None and upd.kind == "published", res.reason
    assert core.twin.scales[2] > 1.3 and core.stats()["twin_wins"] == 1
    ck = load_checkpoint(upd.path)
    assert ck.variant == "rl-families" and ck.metadata["twin"]["held_out"] == res.held_out
    assert RLPolicy.from_checkpoint(ck, 4).encoder.spec.version == 3
    # the next round's incumbent is the winner, warm-started from
    assert core.twin_job()[1]["version"] == 3
