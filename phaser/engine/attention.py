"""Attention terms of the A100 profiles, fitted to Vidur's measured attention.

Vidur (microsoft/vidur, MIT) profiled FlashAttention on an A100 for Llama-2-7B
per layer: decode attention over a batch of ``B`` requests with ``kv``
context tokens each, prefill attention over a chunk of ``c`` tokens after
``kv`` tokens already in the cache. A sample of those rows, taken by the rule
stated in its header, is vendored in
``calibration/vidur_a100_llama2_7b_attention_sample.csv``.

The model is the simulator's own (``phaser.engine.fit``), per layer:

* decode: ``e · B + d · B·kv`` — a cost per decoding request (the kernel's
  per-sequence work: its query, block table, softmax) and per KV token read;
* prefill: ``g + c · chunk·(kv + chunk/2)`` — a fixed cost per chunk and the
  causal-attention work phaser counts everywhere.

``fit_attention(rows)`` fits both with ``phaser.engine.fit.fit``; multiplied
by the model's layers they are the ``d_s, e_s, c_s, g_s`` of
``a100-llama2-7b`` (``profiles._VIDUR_A100_LLAMA2_7B``, which
``tests/engine/test_profiles.py`` holds to this fit). What the two-term
decode model leaves: it is 25 % low at batch 8 and 7–10 % high at batch
96–128 with 3.3k-token contexts (FlashDecoding's per-token cost falls as
the batch grows); a term in the batch's longest context would bring the
sample's MAPE from 7.8 % to 2.5 %, at the price of tracking that maximum in
the engine's closed-form spans.
"""

from __future__ import annotations

from pathlib import Path

from phaser.engine.fit import FitResult, Probe, fit

SAMPLE = Path(__file__).resolve().parent / "calibration" / "vidur_a100_llama2_7b_attention_sample.csv"


def read_sample(path: Path = SAMPLE) -> list[tuple[str, int, int, int, float]]:
    """(kind, batch, chunk, kv, seconds per layer) in file order."""
    out = []
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, b, c, kv, ms = line.split(",")
        out.append((kind, int(b), int(c), int(kv), float(ms) / 1e3))
    return out


def probes(rows) -> tuple[list[Probe], list[Probe]]:
    dec = [Probe(((0.0, 0.0, float(b * kv), float(b), 0.0),), t, "decode") for k, b, c, kv, t in rows if k == "decode"]
    pre = [Probe(((0.0, c * (kv + c / 2.0), 0.0, 0.0, 1.0),), t, "prefill") for k, b, c, kv, t in rows if k == "prefill"]
    return dec, pre


def fit_attention(rows) -> tuple[FitResult | None, FitResult | None]:
    """(decode fit: d_s, e_s per layer; prefill fit: c_s, g_s per layer); None for a
    kind the rows do not hold."""
    dec, pre = probes(rows)
    zero = {"floor_s": 0.0, "a_s": 0.0, "b_s": 0.0}
    return (fit(dec, fixed={**zero, "c_s": 0.0, "g_s": 0.0}) if dec else None,
            fit(pre, fixed={**zero, "d_s": 0.0, "e_s": 0.0}) if pre else None)
