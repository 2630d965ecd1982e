"""Trace windows: disjoint training / selection / test episodes of a replayed trace."""

import pytest

from phaser.errors import PhaserError
from phaser.rl.training import evaluate, scenario_requests
from phaser.rl.windows import EVAL_SEED_BASE, TEST_SEED_BASE, TraceWindows, paired_gain
from phaser.bench.scenarios import get_scenario

W = TraceWindows("azure-code", 600.0)  # the hour in 6 windows: train 0,1,4,5 · select 2 · test 3


def _ids(ws):
    return {r.id for w in ws for r in w}


def test_windows_are_disjoint_rebased_and_dealt_by_role():
    assert W.counts() == {"train": 4, "select": 1, "test": 1}
    tr, se, te = (_ids(W.windows[k]) for k in ("train", "select", "test"))
    assert not (tr & se) and not (tr & te) and not (se & te)
    for ws in W.windows.values():
        for w in ws:
            assert w[0].arrival_s == 0.0 and w[-1].arrival_s < 600.0
            assert all(a.arrival_s <= b.arrival_s for a, b in zip(w, w[1:]))
    # the selection window is the third 10-minute slice of the trace, ids and all
    from load_generator import load_workload

    whole = list(load_workload("azure-code"))
    t0 = whole[0].arrival_s
    assert se == {r.id for r in whole if 1200.0 <= r.arrival_s - t0 < 1800.0}


def test_seed_mapping_keeps_evaluation_and_test_off_the_training_windows():
    assert _ids([W.requests(EVAL_SEED_BASE)]) == _ids(W.windows["select"])
    assert _ids([W.requests(TEST_SEED_BASE)]) == _ids(W.windows["test"])
    train_ids = _ids(W.windows["train"])
    for seed in (10_000, 10_001, 20_003, 7):  # training / demonstration seeds
        assert _ids([W.requests(seed)]) <= train_ids
    assert W.seeds("select") == [EVAL_SEED_BASE] and W.seeds("test") == [TEST_SEED_BASE]
    with pytest.raises(PhaserError, match="only 1 select windows"):
        W.requests(EVAL_SEED_BASE + 1)
    sc = get_scenario("azure-code")
    assert scenario_requests(sc, EVAL_SEED_BASE, windows=W) == W.windows["select"][0]


def test_too_few_windows_and_bad_length_are_user_errors():
    with pytest.raises(PhaserError, match="too short"):
        _ = TraceWindows("azure-code", 3000.0).windows
    with pytest.raises(PhaserError, match="> 0 seconds"):
        TraceWindows("azure-code", 0.0)


def test_paired_gain_hand_computed():
    # gains 10 % and 20 %: mean 15, sd 7.071, half-width 12.706 · 7.071 / √2 = 63.53
    m, hw = paired_gain([0.9, 0.8], [1.0, 1.0])
    assert m == pytest.approx(15.0) and hw == pytest.approx(63.53, abs=0.01)
    with pytest.raises(ValueError):
        paired_gain([1.0], [1.0, 2.0])


def test_routing_matters_on_the_test_window():
    # the premise of training on azure-code: the heuristic beats round robin on held-out data
    from phaser.policies import make_policy

    sc = get_scenario("azure-code")
    rr, wa = (evaluate(sc, lambda s, n=n: make_policy(n, sc.instances, s), W.seeds("test"), windows=W)[0]
              for n in ("round-robin", "workload-aware"))
    assert wa < rr


def test_training_on_windows_reports_the_untouched_test_windows(tmp_path):
    from phaser.rl.checkpoint import load_checkpoint
    from phaser.rl.dqn import DQNConfig
    from phaser.rl.training import train_scenario

    sc = get_scenario("azure-code")
    cfg = DQNConfig(variant="rl-baseline", arch="shared", hidden=(8, 8), batch_size=8, learning_starts=16)
    rep = train_scenario(sc, cfg, 1, 0, tmp_path, eval_every=1, baselines=["round-robin"], windows=W)
    stats = load_checkpoint(tmp_path).metadata["stats"]
    assert stats["eval_seeds"] == W.seeds("select")
    assert stats["windows"]["n_test"] == 1 and stats["windows"]["window_s"] == 600.0
    test = rep.extras["test_e2e_per_window"]
    assert set(test) == {"round-robin", "rl-baseline"} and all(len(v) == 1 and v[0] > 0 for v in test.values())
    # the test window's round robin is that window's own simulation, not the selection set's
    assert test["round-robin"][0] != pytest.approx(rep.baselines["round-robin"])
