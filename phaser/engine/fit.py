"""Fit a profile's iteration-time model to measurements: one routine for every
source (a real engine probed by ``phaser calibrate``, operator profiles).

The model is the simulator's own (``phaser.engine.profiles``)::

    iteration_time = max(floor_s, a_s + b_s · n_tokens) + c_s · prefill_attn_work + d_s · decode_kv_tokens
                     + e_s · n_decode + g_s · n_chunks

A measurement (``Probe``) is the duration of one or more iterations — a
prompt prefilled in chunks is several — each described by its
``(n_tokens, prefill_attn_work, decode_kv_tokens[, n_decode, n_chunks])``
exactly as ``phaser.engine.instance`` computes them (the last two default
to 0). ``fit`` minimises the squared
*relative* error (so a 10 ms decode step weighs as much as a 2 s prefill;
the figure of merit everywhere in phaser is MAPE), all coefficients ≥ 0,
with scipy's bounded least squares from a few starting points (the
``max`` makes the problem piecewise smooth), and reports MAPE per probe
group ("prefill", "decode", …) so the fit error of each term is visible.
Coefficients a caller knows already can be held fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TERMS = ("floor_s", "a_s", "b_s", "c_s", "d_s", "e_s", "g_s")


@dataclass(frozen=True)
class Probe:
    iterations: tuple[tuple[float, ...], ...]  # (n_tokens, prefill_attn_work, decode_kv_tokens[, n_decode, n_chunks])
    measured_s: float
    group: str = ""


def _cols(iterations) -> np.ndarray:
    a = np.zeros((len(iterations), 5))
    for i, it in enumerate(iterations):
        a[i, :len(it)] = it
    return a


def predict(coef: dict, probe: Probe) -> float:
    a = _cols(probe.iterations)
    lin = np.maximum(coef["floor_s"], coef["a_s"] + coef["b_s"] * a[:, 0])
    return float((lin + coef["c_s"] * a[:, 1] + coef["d_s"] * a[:, 2] + coef.get("e_s", 0.0) * a[:, 3]
                  + coef.get("g_s", 0.0) * a[:, 4]).sum())


def prefill_iterations(prompt: int, chunk: int, cached: int = 0) -> tuple[tuple[float, float, float], ...]:
    """A prompt prefilled alone in chunks of at most ``chunk`` tokens (work as the engine counts it)."""
    out, done = [], cached
    while done < prompt:
        c = min(chunk, prompt - done)
        out.append((float(c), c * (done + c / 2.0), 0.0))
        done += c
    return tuple(out)


@dataclass
class FitResult:
    coef: dict
    mape: dict  # group -> MAPE (fraction); "all" too
    n: dict  # group -> probes

    def table(self) -> list[str]:
        lines = [f"{k} = {self.coef[k]:.6g} s" for k in TERMS]
        lines += [f"fit error {g}: MAPE {100 * m:.1f} % over {self.n[g]} probes" for g, m in self.mape.items()]
        return lines


def fit(probes: list[Probe], fixed: dict | None = None, starts: int = 6, seed: int = 0) -> FitResult:
    from scipy.optimize import least_squares

    if not probes:
        raise ValueError("no probes to fit")
    fixed = dict(fixed or {})
    y = np.array([p.measured_s for p in probes], float)
    if (y <= 0).any():
        raise ValueError("every measured duration must be > 0")
    # per-probe sums the model is linear in, except the max(): keep the iterations per probe
    its = [_cols(p.iterations) for p in probes]
    # a term whose driver is zero in every probe cannot be fitted: it is held at 0
    for k, col in (("e_s", 3), ("g_s", 4)):
        if k not in fixed and not any(a[:, col].any() for a in its):
            fixed[k] = 0.0
    free = [k for k in TERMS if k not in fixed]

    def model(x):
        c = dict(fixed, **dict(zip(free, x)))
        out = np.empty(len(its))
        for i, a in enumerate(its):
            lin = np.maximum(c["floor_s"], c["a_s"] + c["b_s"] * a[:, 0])
            out[i] = (lin + c["c_s"] * a[:, 1] + c["d_s"] * a[:, 2] + c["e_s"] * a[:, 3] + c["g_s"] * a[:, 4]).sum()
        return out

    def resid(x):
        return model(x) / y - 1.0

    rng = np.random.default_rng(seed)
    # scale of each term: the measured time divided by its driver, so starts are sensible
    tot = np.array([[len(a), a[:, 0].sum(), a[:, 1].sum(), a[:, 2].sum(), a[:, 3].sum(), a[:, 4].sum()] for a in its])
    scale = {"floor_s": np.median(y / np.maximum(tot[:, 0], 1)), "a_s": np.median(y / np.maximum(tot[:, 0], 1)) / 4,
             "b_s": np.median(y / np.maximum(tot[:, 1], 1)), "c_s": np.median(y / np.maximum(tot[:, 2], 1)) * 0.1,
             "d_s": np.median(y / np.maximum(tot[:, 3], 1)) * 0.1, "e_s": np.median(y / np.maximum(tot[:, 4], 1)) * 0.1,
             "g_s": np.median(y / np.maximum(tot[:, 5], 1)) * 0.1}
    best = None
    for k in range(max(1, starts)):
        x0 = np.array([scale[t] * (1.0 if k == 0 else float(rng.lognormal(0, 1.5))) for t in free])
        x0 = np.maximum(x0, 1e-12)
        r = least_squares(resid, x0, bounds=(0.0, np.inf), x_scale=np.maximum(x0, 1e-12), method="trf", max_nfev=5000)
        if best is None or r.cost < best.cost:
            best = r
    coef = dict(fixed, **{t: float(v) for t, v in zip(free, best.x)})
    err = np.abs(model(best.x) / y - 1.0)
    groups = sorted({p.group for p in probes})
    mape = {g: float(err[[p.group == g for p in probes]].mean()) for g in groups}
    mape["all"] = float(err.mean())
    n = {g: sum(p.group == g for p in probes) for g in groups}
    n["all"] = len(probes)
    return FitResult({k: coef[k] for k in TERMS}, mape, n)
