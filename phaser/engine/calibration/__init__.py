"""Vendored operator-profile rows used to calibrate the token-wise part of each
latency profile (see SOURCES.md here for origin and licence)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

LINEAR_OPS_CSV = Path(__file__).with_name("linear_ops_tp1.csv")


def linear_ops(profile: str) -> tuple[np.ndarray, np.ndarray]:
    """(num_tokens, seconds) of the measured token-wise ops for ``profile``;
    empty arrays when the profile has no table (V100)."""
    n, t = [], []
    with LINEAR_OPS_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["profile"] == profile:
                n.append(int(row["num_tokens"]))
                t.append(float(row["linear_ops_ms_all_layers"]) / 1e3)
    return np.asarray(n, dtype=float), np.asarray(t, dtype=float)


def linear_mape(profile) -> float:
    """Mean absolute percentage error of ``max(floor, a + b·n)`` of a
    ``LatencyProfile`` against its table (fraction, not percent)."""
    n, t = linear_ops(profile.name)
    if n.size == 0:
        raise ValueError(f"no calibration table for {profile.name}")
    pred = np.maximum(profile.floor_s, profile.a_s + profile.b_s * n)
    return float(np.mean(np.abs(pred - t) / t))
