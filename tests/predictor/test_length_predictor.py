import json
from types import SimpleNamespace

import pytest

from load_generator.synthetic.paper_mix import paper_mix
from phaser.errors import PhaserError
from phaser.predictor import LengthPredictor, MeanPredictor, evaluate


@pytest.fixture(scope="module")
def split():
    reqs = list(paper_mix(5000, seed=11).requests)
    return reqs[:3000], reqs[3000:]


def test_beats_global_mean_on_paper_mix(split):
    train, test = split
    rep = LengthPredictor().fit(train).evaluate(test)
    base = evaluate(MeanPredictor().fit(train), test)
    assert rep["mae"] < 0.9 * base["mae"]            # per-task knowledge is worth >10% MAE
    assert rep["mae"] < rep["mean_mae"]
    assert rep["bucket_accuracy"] >= base["bucket_accuracy"] - 0.01
    assert len(rep["bucket_recall"]) == 3 and sum(rep["bucket_counts"]) == rep["n"] == 2000


def test_online_updates_learn_from_completions(split):
    train, test = split
    p = LengthPredictor()
    before = p.evaluate(test)["mae"]
    v0 = p.model_version
    for r in train:
        p.update(r.prompt_tokens, r.task, r.output_tokens)
    assert p.model_version == v0 + len(train)
    offline = LengthPredictor().fit(train)
    assert p.evaluate(test)["mae"] == pytest.approx(offline.evaluate(test)["mae"])
    assert p.evaluate(test)["mae"] < before


def test_task_dominates_prediction():
    p = LengthPredictor()
    for _ in range(200):
        p.update(30, "short", 20)
        p.update(30, "long", 3000)
    s, bs = p.predict(SimpleNamespace(prompt_tokens=30, task="short", prompt_text=None))
    l, bl = p.predict(SimpleNamespace(prompt_tokens=30, task="long", prompt_text=None))
    assert s < 100 < 2000 < l and (bs, bl) == (0, 2)
    # unseen task falls back to the global blend
    g, _ = p.predict(SimpleNamespace(prompt_tokens=30, task="new", prompt_text=None))
    assert s < g < l


def test_predict_never_reads_the_oracle(split):
    class Guarded:
        prompt_tokens, task, prompt_text = 120, "eli5", None

        @property
        def output_tokens(self):
            raise AssertionError("predictor read the oracle")

    p = LengthPredictor().fit(split[0])
    tokens, bucket = p.predict(Guarded())
    assert tokens > 0 and bucket in (0, 1, 2)


def test_save_load_round_trip_and_errors(tmp_path, split):
    p = LengthPredictor().fit(split[0])
    f = tmp_path / "pred.json"
    p.save(f)
    q = LengthPredictor.load(f)
    assert q.model_version == p.model_version
    for r in split[1][:200]:
        assert q.predict(r) == p.predict(r)
    d = json.loads(f.read_text())
    d["format_version"] = 99
    f.write_text(json.dumps(d))
    with pytest.raises(PhaserError, match="version"):
        LengthPredictor.load(f)
    with pytest.raises(PhaserError, match="not found"):
        LengthPredictor.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(PhaserError):
        LengthPredictor.load(tmp_path / "bad.json")


def test_cross_fitted_never_uses_a_requests_own_length():
    from protos.messages import Request

    # one unique task per request pair: if a request's own length leaked in,
    # its prediction would move towards it.
    reqs = [Request(id=f"r{i}", arrival_s=0.0, prompt_tokens=10, task=f"t{i // 2}", output_tokens=10 if i % 2 else 3000)
            for i in range(40)]
    from phaser.predictor import CrossFitted

    cf = CrossFitted(reqs, folds=2)
    for i, r in enumerate(reqs):
        sibling = reqs[i ^ 1]
        own_fold_model = cf.models[i % 2]
        assert cf.predict(r) == own_fold_model.predict(r)
        # the model predicting r was fitted on its sibling, never on r
        tokens, _ = cf.predict(r)
        assert abs(tokens - sibling.output_tokens) < abs(tokens - r.output_tokens)
