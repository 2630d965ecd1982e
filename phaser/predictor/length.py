"""Output-length predictor: from what the router knows at arrival (prompt
tokens, task tag if any) predict the expected output length and its decode
bucket (0-256, 256-2048, >=2048 tokens; ``phaser.types``).

Model: a hierarchical histogram with empirical-Bayes shrinkage, the online
analogue of the paper's random forest on (prompt length, application).
Requests are grouped into cells keyed by (task, log2 prompt-length bin); each
cell keeps a count, the sum of output tokens, the sum of log output tokens and
per-bucket counts. A prediction blends the cell with its task's totals, and the
task with the global totals, each level weighted ``n / (n + k)`` with a
pseudo-count ``k = 20`` (a cell with 20 samples gets half of its own weight):

    mean(cell)    = (S_cell + k * mean(task))   / (n_cell + k)
    P(bucket|cell) = (B_cell + k * P(b|task))   / (n_cell + k)

The expected length is the blended *mean* (the view sums predicted tokens, so
the mean is the right statistic); the bucket is the most probable one. Why not a
network: training and prediction are a few dict lookups, updates from every
completion are exact and O(1), and with no prompt text in the public traces
the inputs are two features -- a histogram of them is what a network would
learn. ``prompt_text`` is accepted and ignored (no workload here carries it).

Why log2 prompt bins: prompt lengths span 1 to 100k tokens, and the relation
with output length, where there is one, is multiplicative.

Structural guarantee: ``predict`` reads only ``prompt_tokens``, ``task`` and
``prompt_text`` of the request (via ``features_of``); the oracle is read only by
``fit``/``evaluate``, i.e. offline from completed requests.

Persistence: JSON (no pickle) with ``format``/``format_version`` (the file
layout) and ``model_version`` (incremented on every fit/update batch, so a
router can tell which model made a prediction). ``meta`` is free-form
provenance (``phaser predictor fit`` records the workload, count, seed and skip
it was fitted on); it is optional, so files without it still load.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

from phaser.errors import PhaserError
from phaser.types import BUCKET_EDGES, N_BUCKETS, bucket_of

FORMAT = "phaser-length-predictor"
FORMAT_VERSION = 1
#: Pseudo-count of the shrinkage (see module docstring).
PSEUDO_COUNT = 20.0
#: Prediction before any data: the middle of bucket 1's log range would be
#: arbitrary; 128 tokens is the paper-mix's order of magnitude (task means 62-334).
PRIOR_MEAN = 128.0
_GLOBAL = "\x00all"
_NOTASK = "\x00none"


class Features(NamedTuple):
    prompt_tokens: int
    task: str | None
    prompt_text: str | None


def features_of(request) -> Features:
    """The only fields of a request the predictor may read."""
    return Features(int(request.prompt_tokens), getattr(request, "task", None), getattr(request, "prompt_text", None))


def prompt_bin(prompt_tokens: int) -> int:
    return max(0, int(math.log2(max(1, prompt_tokens))))


@dataclass
class _Stats:
    n: float = 0.0
    s: float = 0.0
    b: list | None = None

    def __post_init__(self):
        if self.b is None:
            self.b = [0.0] * N_BUCKETS

    def add(self, out: int) -> None:
        self.n += 1
        self.s += out
        self.b[bucket_of(out)] += 1


class LengthPredictor:
    """Hierarchical-histogram output-length predictor; see module docstring."""

    name = "histogram"

    def __init__(self, pseudo_count: float = PSEUDO_COUNT):
        self.k = float(pseudo_count)
        self.model_version = 0
        self.meta: dict = {}
        self._cells: dict[tuple[str, int], _Stats] = {}
        self._tasks: dict[str, _Stats] = {}
        self._all = _Stats()

    # ---------------------------------------------------------------- training
    def update(self, prompt_tokens: int, task: str | None, output_tokens: int, bump_version: bool = True) -> None:
        """Learn from one completed request (online)."""
        t = task if task is not None else _NOTASK
        key = (t, prompt_bin(prompt_tokens))
        out = int(output_tokens)
        self._cells.setdefault(key, _Stats()).add(out)
        self._tasks.setdefault(t, _Stats()).add(out)
        self._all.add(out)
        if bump_version:
            self.model_version += 1

    def fit(self, requests: Iterable) -> "LengthPredictor":
        """Offline training from completed requests (reads their ``output_tokens``)."""
        n = 0
        for r in requests:
            if r.output_tokens is None:
                continue
            self.update(r.prompt_tokens, r.task, r.output_tokens, bump_version=False)
            n += 1
        if n:
            self.model_version += 1
        return self

    # -------------------------------------------------------------- prediction
    def _blend(self, st: _Stats | None, parent_mean: float, parent_p: list[float]) -> tuple[float, list[float]]:
        if st is None or st.n == 0:
            return parent_mean, parent_p
        k = self.k
        d = st.n + k
        return (st.s + k * parent_mean) / d, [(st.b[i] + k * parent_p[i]) / d for i in range(N_BUCKETS)]

    def predict_features(self, prompt_tokens: int, task: str | None) -> tuple[float, list[float]]:
        """(expected output tokens, bucket probabilities)."""
        prior_p = [0.0] * N_BUCKETS
        prior_p[bucket_of(PRIOR_MEAN)] = 1.0
        m, p = self._blend(self._all, PRIOR_MEAN, prior_p)
        t = task if task is not None else _NOTASK
        m, p = self._blend(self._tasks.get(t), m, p)
        m, p = self._blend(self._cells.get((t, prompt_bin(prompt_tokens))), m, p)
        return m, p

    def predict(self, request) -> tuple[float, int]:
        f = features_of(request)
        m, p = self.predict_features(f.prompt_tokens, f.task)
        return m, max(range(N_BUCKETS), key=p.__getitem__)

    # -------------------------------------------------------------- evaluation
    @property
    def global_mean(self) -> float:
        """Mean output length of everything learned (``PRIOR_MEAN`` before any data)."""
        return self._all.s / self._all.n if self._all.n else PRIOR_MEAN

    @property
    def n_samples(self) -> int:
        return int(self._all.n)

    def evaluate(self, requests: Iterable) -> dict:
        return evaluate(self, requests, baseline_mean=self.global_mean)

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "model": self.name,
            "model_version": self.model_version, "pseudo_count": self.k, "bucket_edges": list(BUCKET_EDGES),
            "all": [self._all.n, self._all.s, self._all.b],
            "tasks": {t: [s.n, s.s, s.b] for t, s in self._tasks.items()},
            "cells": [[t, b, s.n, s.s, s.b] for (t, b), s in self._cells.items()],
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LengthPredictor":
        if d.get("format") != FORMAT:
            raise PhaserError("not a phaser length-predictor file")
        if d.get("format_version") != FORMAT_VERSION:
            raise PhaserError(f"length-predictor format version {d.get('format_version')} is not supported "
                              f"(this phaser reads {FORMAT_VERSION})")
        if list(d.get("bucket_edges", [])) != list(BUCKET_EDGES):
            raise PhaserError("length-predictor file uses different decode buckets")
        try:
            p = cls(float(d["pseudo_count"]))
            p.model_version = int(d["model_version"])
            p.meta = dict(d.get("meta") or {})
            n, s, b = d["all"]
            p._all = _Stats(float(n), float(s), [float(x) for x in b])
            p._tasks = {t: _Stats(float(n), float(s), [float(x) for x in b]) for t, (n, s, b) in d["tasks"].items()}
            p._cells = {(t, int(bn)): _Stats(float(n), float(s), [float(x) for x in b]) for t, bn, n, s, b in d["cells"]}
        except (KeyError, TypeError, ValueError) as e:
            raise PhaserError(f"corrupt length-predictor file: {e}") from None
        return p

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "LengthPredictor":
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise PhaserError(f"length-predictor file not found: {path}") from None
        except (OSError, json.JSONDecodeError) as e:
            raise PhaserError(f"cannot read length-predictor file {path}: {e}") from None
        if not isinstance(d, dict):
            raise PhaserError(f"{path} is not a length-predictor file")
        return cls.from_dict(d)


class MeanPredictor:
    """The baseline: always the global mean (bucket of the mean). Same interface."""

    name = "global-mean"

    def __init__(self, mean: float = PRIOR_MEAN):
        self.mean = float(mean)
        self.model_version = 0
        self._n, self._s = 0, 0.0

    def fit(self, requests: Iterable) -> "MeanPredictor":
        for r in requests:
            if r.output_tokens is not None:
                self.update(r.prompt_tokens, r.task, r.output_tokens)
        return self

    def update(self, prompt_tokens: int, task: str | None, output_tokens: int) -> None:
        self._n += 1
        self._s += output_tokens
        self.mean = self._s / self._n

    def predict(self, request) -> tuple[float, int]:
        return self.mean, bucket_of(self.mean)


def evaluate(predictor, requests: Iterable, baseline_mean: float | None = None) -> dict:
    """Accuracy per true bucket, overall bucket accuracy and MAE of ``predictor``
    on completed ``requests``; with ``baseline_mean``, also the MAE and accuracy of
    always predicting that mean."""
    n = 0
    abs_err = base_err = 0.0
    hit = base_hit = 0
    per = [[0, 0] for _ in range(N_BUCKETS)]  # [correct, total] per true bucket
    for r in requests:
        if r.output_tokens is None:
            continue
        m, b = predictor.predict(r)
        tb = bucket_of(r.output_tokens)
        n += 1
        abs_err += abs(m - r.output_tokens)
        per[tb][1] += 1
        if b == tb:
            hit += 1
            per[tb][0] += 1
        if baseline_mean is not None:
            base_err += abs(baseline_mean - r.output_tokens)
            base_hit += bucket_of(baseline_mean) == tb
    if n == 0:
        raise PhaserError("no requests with known output length to evaluate on")
    out = {
        "n": n, "mae": abs_err / n, "bucket_accuracy": hit / n,
        "bucket_recall": [c / t if t else None for c, t in per],
        "bucket_counts": [t for _, t in per],
    }
    if baseline_mean is not None:
        out.update(mean_baseline=baseline_mean, mean_mae=base_err / n, mean_bucket_accuracy=base_hit / n)
    return out


class CrossFitted:
    """Predictions for a benchmark workload without leaking any request's own
    output length into its prediction: requests are split into ``folds`` by
    position, a ``LengthPredictor`` is fitted on all other folds, and each
    request is predicted by the model that never saw it (k-fold cross-fitting).
    Works for synthetic draws and for fixed trace replays alike."""

    name = "histogram-crossfit"

    def __init__(self, requests: list, folds: int = 2, pseudo_count: float = PSEUDO_COUNT):
        if folds < 2:
            raise PhaserError("cross-fitting needs at least 2 folds")
        self._fold = {r.id: i % folds for i, r in enumerate(requests)}
        self.models = []
        for f in range(folds):
            self.models.append(LengthPredictor(pseudo_count).fit(
                r for i, r in enumerate(requests) if i % folds != f))
        self.model_version = 1

    def predict(self, request) -> tuple[float, int]:
        return self.models[self._fold.get(request.id, 0)].predict(request)
