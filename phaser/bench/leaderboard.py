"""``phaser bench leaderboard``: every policy × every scenario family × load point.

A **family** is one cluster and workload where operators live; its load points
are fractions of its capacity (``LOADS``: 50, 80, 95 and 110 %), where
capacity is the highest rate at which round robin meets the SLO (p99 TTFT
and p99 TBT, ``phaser.bench.capacity``) on the family's requests. Every
point has the same request count (above capacity latency grows with run
length, so the count is part of the point; it is stated in every row).

Families (KV sizes per instance as vLLM sizes them, ``phaser.engine.profiles``):

* ``paper`` — paper-mix on 4 × V100-32GB, vLLM V0 scheduling (the paper's);
* ``paper-16gb`` — the same on 4 × V100-16GB (3.6k KV tokens each: the most
  common cloud V100, run at utilization 0.95 without CUDA graphs);
* ``kv-starved`` — paper-mix on 4 × A10G-24GB Llama-2-7B (12.4k KV tokens
  each), vLLM V0; the A10G's costs are the A100's measured ones carried by
  roofline ratios, not a measurement of the part;
* ``bursty-long-prompt`` — azure-code on 8 × A100-80GB Llama-3-8B;
* ``conversation`` — azure-conv on 8 × A100-80GB Llama-3-8B;
* ``prefix-heavy`` — the Mooncake trace on 16 × A100-80GB Llama-3.1-8B (128k),
  vLLM V1 (chunked prefill, 8,192 tokens a step), with its own p99 TTFT SLO of
  60 s: a 100k-token prompt alone takes about 30 s to prefill, so no router
  meets 2 s there.

* ``heterogeneous`` — azure-conv on a mixed cluster, 4 × A100 + 4 × H100
  (Llama-3-8B): two GPU generations behind one router.

**Requests are the benchmark's own**, never a learned router's training
data: synthetic families use workload seeds ``SEED_BASE + i`` (training uses
10,000+, demonstrations 20,000+, model selection 100+); replayed traces use
their *test* windows (``phaser.rl.windows``: 180 s windows dealt
train/train/select/test, the test ones never used to choose anything),
each retimed to the point's rate keeping its burst shape. A trace family's
request count is its test window's, and it has as many draws as test windows
(azure-code and azure-conv 5, Mooncake 1).

Per (family, load, policy), over the seeds: mean and p99 E2E, p99 TTFT and
TBT, **goodput** (share of requests whose TTFT and own p99 TBT meet the SLO;
rejected requests count as missing it), the paired gain in mean E2E over
round robin with its 95 % CI, rejected requests, and the **capture ratio** =
gain ÷ the clairvoyant lookahead's gain on the same requests (seed 0), shown
where that gain is at least 1 %. The lookahead is not an upper bound, so a
ratio above 1 can happen and is shown as it is. It is expensive (a fork per
instance per decision), so it runs once per family and load and is cached
under ``<cache>/leaderboard/`` keyed by everything it depends on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from phaser.bench.capacity import DEFAULT_SLO_TBT_P99, DEFAULT_SLO_TTFT_P99, find_capacity
from phaser.bench.scenarios import Scenario
from phaser.errors import PhaserError

LOADS = (0.5, 0.8, 0.95, 1.1)
QUICK_LOADS = (0.8, 1.1)
SEED_BASE = 30_000
#: capture ratio shown only where the lookahead gains at least this much (%)
MIN_LOOKAHEAD_GAIN = 1.0
DEFAULT_POLICIES = ("round-robin", "least-requests", "workload-aware", "prefix-aware", "power-of-two", "rl-guided", "rl-families",
                    "llm-d", "llm-d-load-aware", "dynamo-kv", "sglang-cache-aware", "aibrix-least-kv-cache",
                    "production-stack-load-aware")


@dataclass(frozen=True)
class Family:
    name: str
    scenario: Scenario
    trace: bool = False  # a replayed trace: its test windows, retimed
    note: str = ""
    #: the family's own p99 TTFT SLO (s) where the default cannot hold for any router
    slo_ttft: float | None = None


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("paper", Scenario("paper", "paper-mix", 4, "v100-llama2-7b", 20.0, 1000, scheduler="vllm-v0"),
           note="paper-mix, 4 x V100-32GB, vLLM V0"),
    Family("paper-16gb", Scenario("paper-16gb", "paper-mix", 4, "v100-16gb-llama2-7b", 5.0, 1000, scheduler="vllm-v0"),
           note="paper-mix, 4 x V100-16GB (3.6k KV tokens each), vLLM V0"),
    Family("kv-starved", Scenario("kv-starved", "paper-mix", 4, "a10g-llama2-7b", 5.0, 1000, scheduler="vllm-v0"),
           note="paper-mix, 4 x A10G-24GB Llama-2-7B (12.4k KV tokens each), vLLM V0"),
    Family("bursty-long-prompt", Scenario("bursty-long-prompt", "azure-code", 8, "a100-llama3-8b", None, None),
           trace=True, note="azure-code test windows, 8 x A100-80GB Llama-3-8B"),
    Family("conversation", Scenario("conversation", "azure-conv", 8, "a100-llama3-8b", None, None),
           trace=True, note="azure-conv test windows, 8 x A100-80GB Llama-3-8B"),
    Family("heterogeneous", Scenario("heterogeneous", "azure-conv", 8, "a100-llama3-8b", None, None,
                                     profiles=("a100-llama3-8b",) * 4 + ("h100-llama3-8b",) * 4),
           trace=True, note="azure-conv test windows, 4 x A100-80GB + 4 x H100 Llama-3-8B"),
    Family("prefix-heavy", Scenario("prefix-heavy", "mooncake", 16, "a100-llama31-8b", None, None, scheduler="vllm-v1"),
           trace=True, note="Mooncake test windows, 16 x A100-80GB Llama-3.1-8B (128k), vLLM V1 (chunked, 8,192 "
                            "tokens), prefix caching, TTFT SLO 60 s",
           slo_ttft=60.0),
)}


def get_families(spec: str | None) -> list[Family]:
    names = [s.strip() for s in (spec or ",".join(FAMILIES)).split(",") if s.strip()]
    bad = [n for n in names if n not in FAMILIES]
    if bad:
        raise PhaserError(f"unknown family {bad[0]!r}; known: {', '.join(FAMILIES)}")
    return [FAMILIES[n] for n in names]


# ------------------------------------------------------------------ requests
def family_draw(fam: Family, seed: int, rate: float | None, n: int) -> list:
    """The family's requests for workload seed ``seed`` (a trace family: the window ``seed`` names,
    ``phaser.rl.windows``), retimed to ``rate`` (None: its own). Training, selection and the
    leaderboard differ only in the seeds they pass."""
    from load_generator import transforms
    from load_generator.registry import load_workload

    sc = fam.scenario
    if fam.trace:
        from phaser.rl.windows import TraceWindows

        reqs = TraceWindows(sc.workload).requests(seed)
        return transforms.retime(reqs, rate) if rate else reqs
    return list(load_workload(sc.workload, n=n, rate=rate or sc.rate, seed=seed))


def family_requests(fam: Family, i: int, rate: float | None, n: int) -> list:
    """The leaderboard's draw ``i`` of the family at ``rate``: seed ``SEED_BASE + i``, or the trace's
    test window ``i`` (cycling)."""
    if fam.trace:
        from phaser.rl.windows import TEST_SEED_BASE, TraceWindows

        k = len(TraceWindows(fam.scenario.workload).seeds("test"))
        return family_draw(fam, TEST_SEED_BASE + (i % k), rate, n)
    return family_draw(fam, SEED_BASE + i, rate, n)


def _run(fam: Family, policy: str, reqs: list, seed: int, keep: bool = False):
    from phaser.bench import runner

    return runner.run_one(fam.scenario, policy, seed, requests=reqs, keep_records=keep)


# ------------------------------------------------------------------ capacity
def capacity(fam: Family, n: int, slo_ttft: float, slo_tbt: float) -> tuple[float, list]:
    from phaser.bench import runner

    start = fam.scenario.rate or runner.mean_rate(family_requests(fam, 0, None, n)) or 1.0

    def run(rate: float) -> dict:
        row, _ = _run(fam, "round-robin", family_requests(fam, 0, rate, n), SEED_BASE)
        return row

    res = find_capacity(run, start, slo_ttft_p99=slo_ttft, slo_tbt_p99=slo_tbt, iterations=5)
    if res.capacity_rps <= 0:
        raise PhaserError(f"family {fam.name}: round robin meets the SLO at no rate tried")
    return res.capacity_rps, res.probes


# ------------------------------------------------------------------ lookahead cache
def _cache_dir() -> Path:
    from services.engines.llamacpp import cache_dir

    return cache_dir() / "leaderboard"


def lookahead_gain(fam: Family, reqs: list, rate: float, seed: int, horizon_s: float = 10.0,
                   base: str = "workload-aware", use_cache: bool = True) -> tuple[float, bool]:
    """(clairvoyant lookahead's gain over round robin on ``reqs`` in %, from cache?)"""
    from phaser.bench import runner
    from phaser.bench.headroom import lookahead
    from phaser.engine.profiles import get_profile, profile_to_dict
    from phaser.policies import make_policy
    from phaser.predictor import CrossFitted

    sc = fam.scenario
    key = json.dumps({"family": asdict(sc), "profiles": [profile_to_dict(get_profile(p)) for p in sc.profile_names()],
                      "rate": rate,
                      "seed": seed, "n": len(reqs), "base": base, "horizon_s": horizon_s,
                      "reqs": hashlib.sha256(json.dumps([(r.id, r.arrival_s, r.prompt_tokens, r.output_tokens)
                                                          for r in reqs]).encode()).hexdigest()}, sort_keys=True)
    path = _cache_dir() / f"lookahead-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
    if use_cache and path.exists():
        try:
            return float(json.loads(path.read_text())["gain_pct"]), True
        except (ValueError, KeyError):
            pass
    rr, _ = _run(fam, "round-robin", reqs, seed)
    la = lookahead(reqs, runner.sim_config(sc), lambda: make_policy(base, sc.instances, seed),
                   predictor=CrossFitted(reqs), seed=seed, horizon_s=horizon_s)
    gain = 100.0 * (1.0 - la.e2e_mean / rr["e2e_mean"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"gain_pct": gain, "key": json.loads(key), "wall_s": la.wall_seconds}))
    return gain, False


# ------------------------------------------------------------------ the board
def before_run(fam: Family, n: int) -> str:
    """One line before a family runs: its instances' KV cache as vLLM sizes it, and how many
    of its requests (draw 0) no instance can serve (they become ``rejected`` records)."""
    from phaser.bench import runner
    from phaser.engine.profiles import get_profile

    gib = float(1 << 30)
    parts = []
    for name in dict.fromkeys(fam.scenario.profile_names()):
        m = get_profile(name).memory()
        parts.append(f"{name}: {get_profile(name).kv_capacity_tokens:,} KV tokens ({m['usable'] / gib:.2f} GiB usable "
                     f"- weights {m['weights'] / gib:.2f} - activation {m['activation'] / gib:.2f} - CUDA graphs "
                     f"{m['cuda_graphs'] / gib:.2f} - non-torch {m['non_torch'] / gib:.2f})")
    reqs = family_requests(fam, 0, None, n)
    bad, why = runner.refused(fam.scenario, reqs)
    tail = f"{bad} of {len(reqs)} requests exceed the context or KV capacity (rejected: {why})" if bad else \
        f"all {len(reqs)} requests fit"
    return f"{fam.name}: {'; '.join(parts)}; {tail}"


def goodput(records: list, rejected: int, slo_ttft: float, slo_tbt: float) -> float:
    """``phaser.slo.goodput`` (the one definition every report uses)."""
    from phaser.slo import SLO, goodput as _goodput

    return _goodput(records, rejected, SLO(slo_ttft, slo_tbt))


def run_board(families: list[Family], policies: list[str], *, loads=LOADS, seeds: int = 3, n: int = 1000,
              slo_ttft: float = DEFAULT_SLO_TTFT_P99, slo_tbt: float = DEFAULT_SLO_TBT_P99,
              with_lookahead: bool = True, progress: Callable[[str], None] = lambda m: None) -> dict:
    from phaser.bench.stats import mean_ci

    if "round-robin" not in policies:
        policies = ["round-robin", *policies]
    out = {"loads": list(loads), "seeds": seeds, "requests": n, "slo": {"ttft_p99": slo_ttft, "tbt_p99": slo_tbt},
           "families": []}
    for fam in families:
        fam_ttft = fam.slo_ttft or slo_ttft
        progress(before_run(fam, n))
        cap, probes = capacity(fam, n, fam_ttft, slo_tbt)
        progress(f"{fam.name}: round robin's capacity at the SLO {cap:.2f} req/s")
        fam_out = {"family": fam.name, "note": fam.note, "capacity_rps": cap, "capacity_probes": probes,
                   "slo_ttft_p99": fam_ttft,
                   "scenario": asdict(fam.scenario), "points": []}
        n_draws = seeds
        if fam.trace:  # a trace has as many independent draws as test windows
            from phaser.rl.windows import TraceWindows

            n_draws = min(seeds, len(TraceWindows(fam.scenario.workload).seeds("test")))
        fam_out["seeds"] = n_draws
        for load in loads:
            rate = load * cap
            draws = [family_requests(fam, i, rate, n) for i in range(n_draws)]
            la_gain, cached = (lookahead_gain(fam, draws[0], rate, SEED_BASE) if with_lookahead else (None, False))
            if with_lookahead:
                progress(f"{fam.name} @ {100 * load:.0f} %: lookahead {la_gain:+.2f} %{' (cached)' if cached else ''}")
            runs: dict[str, list[dict]] = {}
            for pol in policies:
                for i, reqs in enumerate(draws):
                    row, recs = _run(fam, pol, reqs, SEED_BASE + i, keep=True)
                    row["goodput"] = goodput(recs, row["rejected"], fam_ttft, slo_tbt)
                    runs.setdefault(pol, []).append(row)
            rr = [r["e2e_mean"] for r in runs["round-robin"]]
            rows = []
            for pol, rs in runs.items():
                gains = [100.0 * (b - r["e2e_mean"]) / b for r, b in zip(rs, rr)]
                g, g_ci = mean_ci(gains)
                e, e_ci = mean_ci([r["e2e_mean"] for r in rs])
                cap_ratio = (g / la_gain) if (la_gain is not None and la_gain >= MIN_LOOKAHEAD_GAIN) else None
                rows.append({"policy": pol, "e2e_mean": e, "e2e_mean_ci95": e_ci,
                             "e2e_p99": float(np.mean([r["e2e_p99"] for r in rs])),
                             "ttft_p99": float(np.mean([r["ttft_p99"] for r in rs])),
                             "tbt_p99": float(np.mean([r["tbt_p99"] for r in rs])),
                             "goodput": float(np.mean([r["goodput"] for r in rs])),
                             "gain_vs_rr_pct": g, "gain_vs_rr_ci95": g_ci, "capture_ratio": cap_ratio,
                             "rejected": int(sum(r["rejected"] for r in rs)),
                             "requests_per_run": int(rs[0]["n_requests"] + rs[0]["rejected"])})
            rows.sort(key=lambda r: -r["gain_vs_rr_pct"])
            fam_out["points"].append({"load": load, "rate": rate, "lookahead_gain_pct": la_gain, "rows": rows})
            progress(f"{fam.name} @ {100 * load:.0f} % ({rate:.2f} req/s): best {rows[0]['policy']} "
                     f"{rows[0]['gain_vs_rr_pct']:+.2f} %")
        out["families"].append(fam_out)
    return out


def markdown(board: dict) -> str:
    lines = [f"SLO: p99 TTFT <= {board['slo']['ttft_p99']} s, p99 TBT <= {board['slo']['tbt_p99']} s; "
             f"{board['seeds']} seeds per point; loads are fractions of round robin's capacity at the SLO.", ""]
    for f in board["families"]:
        lines += [f"**{f['family']}** — {f['note']}; capacity {f['capacity_rps']:.2f} req/s; {f['seeds']} draw(s) per point", "",
                  "| load | policy | E2E mean (s) | E2E p99 | TTFT p99 | TBT p99 | goodput | vs round-robin | capture | rejected |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for p in f["points"]:
            la = p["lookahead_gain_pct"]
            tag = f"{100 * p['load']:.0f} % ({p['rate']:.2f} req/s" + (f"; lookahead {la:+.1f} %)" if la is not None else ")")
            for k, r in enumerate(p["rows"]):
                cap = "–" if r["capture_ratio"] is None else f"{r['capture_ratio']:.2f}"
                lines.append(f"| {tag if k == 0 else ''} | {r['policy']} | {r['e2e_mean']:.3f} ± {r['e2e_mean_ci95']:.3f} | "
                             f"{r['e2e_p99']:.2f} | {r['ttft_p99']:.3f} | {r['tbt_p99']:.3f} | {100 * r['goodput']:.1f} % | "
                             f"{r['gain_vs_rr_pct']:+.2f} % ± {r['gain_vs_rr_ci95']:.2f} | {cap} | {r['rejected']} |")
        lines.append("")
    return "\n".join(lines)


def plots(board: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for f in board["families"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        loads = [100 * p["load"] for p in f["points"]]
        pols = [r["policy"] for r in f["points"][0]["rows"]]
        for pol in pols:
            ys = [next(r["gain_vs_rr_pct"] for r in p["rows"] if r["policy"] == pol) for p in f["points"]]
            ax.plot(loads, ys, marker="o", label=pol)
        la = [p["lookahead_gain_pct"] for p in f["points"]]
        if all(v is not None for v in la):
            ax.plot(loads, la, "k--", label="clairvoyant lookahead")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("load (% of round robin's capacity at the SLO)")
        ax.set_ylabel("mean E2E gain over round robin (%)")
        ax.set_title(f"{f['family']}: {f['note']}", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        p = out_dir / f"leaderboard-{f['family']}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
