"""Live experiments of the twin loop (#14 item 3), each arm a whole ``phaser up`` stack.

``python -m policy_trainer.experiments hidden-hardware --repeats 3 --out DIR``
``python -m policy_trainer.experiments traffic-change --repeats 3 --out DIR``

*Hardware the router was not told about.* The router and the trainer's twin
are told ``--profile`` for every instance; the workers run
``--worker-profile`` (by default half of the instances 1.6× slower). Three
arms, every one with the trainer and its twin running (``--twin``), so all
arms carry the same CPU load:

* ``loop``: ``--policy rl --checkpoint <shipped rl-families>``: the router
  serves the shipped cross-family router (trained on the told profiles) and
  hot-swaps, behind its canary, what the twin publishes;
* ``rl-families``: the shipped router, fixed (the twin's versions are
  published to a store nobody serves from): the policy trained on the wrong
  profile;
* ``workload-aware``: the best heuristic of the heterogeneous family, told the
  wrong profile.

Repeat ``r`` replays the traces ``r`` windows later (``window_spec``: disjoint
requests) and seeds the synthetic parts with ``r``.

Per run: mean E2E of all requests and of the last ``tail`` share by arrival
(when the loop has had time to act), what each twin version measured, and the
fitted time scales of the newest twin round against the truth. Across
repeats (workload seeds 0…R−1, the same seed for every arm of a repeat):
the paired gain of the loop over each other arm with a 95 % t interval
(scipy). Writes ``DIR/hidden-hardware.json``, ``DIR/hidden-hardware.md`` and
``DIR/hidden-hardware.png`` (served E2E over time, rolling mean, per arm).

*A traffic change.* The router is told the truth; the workload changes
half-way (a sequence, ``load_generator.registry``: by default paper-mix, then
prompt-heavy azure-code). Arms: ``loop`` (as above), ``rl-families`` fixed,
and the best heuristic of the new traffic's family on the leaderboard
(bursty-long-prompt: ``prefix-aware``), all with the trainer's twin running.
The requests after the change are cut into thirds by arrival; each third's
mean E2E is compared (paired over repeats), which says after how many
requests of the new traffic the loop is ahead, if it is. The twin's window is
``--twin-window`` (default 600) so it forgets the old traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from phaser.errors import PhaserError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "phaser" / "checkpoints" / "rl-families"
ARMS = {"hidden-hardware": ("loop", "rl-families", "workload-aware"),
        "traffic-change": ("loop", "rl-families", "prefix-aware")}


def truth_scales(told: str, real: list[str]) -> list[float]:
    """The time scale each instance really runs at, from ``NAME@xK`` worker profiles."""
    out = []
    for p in real:
        base, sep, k = p.rpartition("@x")
        if sep and base == told:
            out.append(float(k))
        elif p == told:
            out.append(1.0)
        else:
            raise PhaserError(f"worker profile {p!r} is not {told!r}@xK: its true scale is unknown")
    return out


def window_spec(spec: str, repeat: int, n: int) -> str:
    """The workload of repeat ``repeat``: every replayed-trace part (of a ``>`` sequence too)
    starts ``repeat`` windows later (``skip=``), so repeats replay disjoint requests;
    synthetic parts differ by their seed already."""
    from load_generator.registry import TRACE_FILES

    parts = spec.split(">")
    per = max(1, n // len(parts))
    out = []
    for part in parts:
        base, q, query = part.partition("?")
        if repeat and base.strip() in TRACE_FILES and "+" not in part and "skip=" not in query:
            part = f"{base}?{query + '&' if query else ''}skip={repeat * per}"
        out.append(part)
    return ">".join(out)


def paired_ci(ref: list[float], mine: list[float]) -> tuple[float, float]:
    """Mean paired gain of ``mine`` over ``ref`` in % and its 95 % t half-width (0 for one pair)."""
    from scipy import stats

    g = np.array([100.0 * (r - m) / r for r, m in zip(ref, mine)])
    if len(g) < 2:
        return float(g.mean()), float("nan")
    return float(g.mean()), float(stats.t.ppf(0.975, len(g) - 1) * g.std(ddof=1) / np.sqrt(len(g)))


def twin_versions(store: Path) -> list[dict]:
    """What each twin-published version of a run's store says about itself."""
    from phaser.versions.store import CheckpointStore

    st = CheckpointStore(str(store))
    out = []
    for v in st.versions():
        meta = st.load(v).metadata
        if meta.get("source") != "twin":
            continue
        tw = meta["twin"]
        out.append({"version": v, "gain_pct": tw["gain_pct"], "incumbent": tw.get("incumbent", ""),
                    "scales": tw["scales"], "fit_errors": tw.get("fit_errors")})
    return out


def last_scales(log_text: str) -> list[float] | None:
    """The fitted scales of the newest twin round in the trainer's log (any outcome)."""
    found = re.findall(r"fitted time scales ([0-9., ]+)", log_text)
    return [float(x) for x in found[-1].split(",")] if found else None


def run_arm(arm: str, seed: int, a, workdir: Path) -> dict:
    from services.up import UpConfig, run_up

    store = workdir / f"{arm}-{seed}-store"
    common = dict(requests=a.requests, workload=window_spec(a.workload, seed, a.requests), rate=a.rate, seed=seed, instances=a.instances,
                  workers=a.workers, profile=a.profile, worker_profile=a.worker_profile, time_scale=a.time_scale,
                  monitor=False, trainer=True, twin=True, twin_every_s=a.twin_every_s, twin_window=a.twin_window,
                  checkpoints=str(store))
    if arm == "loop":
        cfg = UpConfig(policy="rl", checkpoint=str(SHIPPED), **common)
    else:
        cfg = UpConfig(policy=arm, **common)
    cap: dict = {}
    t0 = time.monotonic()
    log_path = workdir / f"{arm}-{seed}.log"
    with open(log_path, "w") as log:  # the children's stderr (the trainer's twin lines among them)
        old = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            summary = run_up(cfg, capture=cap)
        finally:
            os.dup2(old, 2)
            os.close(old)
    cs = sorted(cap["completions"], key=lambda c: c.arrival_s)
    ok = [c for c in cs if c.status == "ok"]
    k = int(len(ok) * (1 - a.tail))
    thirds = np.array_split(np.array([c.e2e_s for c in ok[k:]]), 3)
    text = log_path.read_text(errors="replace")
    return {"arm": arm, "seed": seed, "wall_s": round(time.monotonic() - t0, 1), "lost": summary["lost"],
            "duplicates": summary["duplicates"], "completed": len(ok),
            "e2e_mean": float(np.mean([c.e2e_s for c in ok])),
            "e2e_mean_tail": float(np.mean([c.e2e_s for c in ok[k:]])),
            **{f"e2e_mean_tail_{j + 1}of3": float(t.mean()) for j, t in enumerate(thirds)},
            "served": summary.get("policy_versions", []), "twin_versions": twin_versions(store),
            "twin_rounds": {o: len(re.findall(rf"twin round {o}:", text)) for o in ("won", "lost", "fit", "window")},
            "fitted_scales": last_scales(text),
            "series": [(c.arrival_s - cs[0].arrival_s, c.e2e_s) for c in ok]}


def report(runs: list[dict], a, out: Path) -> dict:
    """Tables, paired gains and the plot of one experiment (``a.what``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from phaser.versions.report import rolling_mean

    real = a.worker_profile or a.profile
    truth = truth_scales(a.profile, real.split(",") if "," in real else [real] * a.instances)
    arms = ARMS[a.what]
    name = a.what
    by = {arm: sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"]) for arm in arms}
    res = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "truth_scales": truth,
           "arms": {}, "gains": {}}
    for arm, rs in by.items():
        res["arms"][arm] = [{k: v for k, v in r.items() if k != "series"} for r in rs]
    for key in ("e2e_mean", "e2e_mean_tail", "e2e_mean_tail_1of3", "e2e_mean_tail_2of3", "e2e_mean_tail_3of3"):
        loop = [r[key] for r in by["loop"]]
        res["gains"][key] = {arm: paired_ci([r[key] for r in by[arm]], loop) for arm in arms if arm != "loop"}
    errs = []
    for r in runs:
        if r["fitted_scales"]:
            errs.append(max(abs(f - t) / t for f, t in zip(r["fitted_scales"], truth)))
    res["fit_error_max"] = max(errs) if errs else None
    (out / f"{name}.json").write_text(json.dumps(res, indent=2))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    colors = dict(zip(arms, ("tab:green", "tab:red", "tab:blue")))
    for arm, rs in by.items():
        for j, r in enumerate(rs):
            t, y = (np.array(v) for v in zip(*r["series"]))
            gx, gy = rolling_mean(t, y, a.window_s)
            ax.plot(gx, gy, color=colors[arm], alpha=0.8, lw=1.5, label=arm if j == 0 else None)
    ax.set_xlabel("stack seconds since the first request")
    ax.set_ylabel(f"served mean E2E (s), trailing {a.window_s:.0f} s")
    if name == "traffic-change":
        t_change = np.median([r["series"][int(len(r["series"]) * (1 - a.tail))][0] for r in runs])
        ax.axvline(t_change, color="grey", ls="--", lw=1, label="traffic changes")
    ax.set_title(f"{name}: told {a.profile}, running {real}, {a.workload} ({len(by['loop'])} repeats)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)

    lines = [f"# {name} ({time.strftime('%Y-%m-%d')})", "",
             f"`python -m policy_trainer.experiments {' '.join(sys.argv[1:])}`", "",
             f"Told `{a.profile}`; the workers run `{real}` (true scales {truth}). "
             f"{a.requests} requests of `{a.workload}`" + (f" at {a.rate} req/s" if a.rate else "")
             + f", --time-scale {a.time_scale}, twin rounds every {a.twin_every_s:g} s over the newest "
             f"{a.twin_window} requests; the tail is the last {100 * a.tail:.0f} % by arrival, cut in thirds.", "",
             "| arm | seed | mean E2E (s) | tail mean E2E (s) | lost | twin versions (gain in the twin) | served versions | fitted scales |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, rs in by.items():
        for r in rs:
            tv = ", ".join(f"v{v['version']} {v['gain_pct']:+.1f} %" for v in r["twin_versions"]) or "–"
            sv = ", ".join(f"v{s['version']}×{s['requests']}" for s in r["served"])
            fs = ", ".join(f"{x:.2f}" for x in r["fitted_scales"]) if r["fitted_scales"] else "–"
            lines.append(f"| {arm} | {r['seed']} | {r['e2e_mean']:.3f} | {r['e2e_mean_tail']:.3f} | {r['lost']} | {tv} | {sv} | {fs} |")
    lines += ["", "Paired gain of the loop (95 % t interval over repeats):", ""]
    for key, g in res["gains"].items():
        for arm, (m, h) in g.items():
            lines.append(f"- {key}: loop vs {arm}: {m:+.2f} % ± {h:.2f}")
    if res["fit_error_max"] is not None:
        lines.append(f"- largest fitted-scale error against the truth, any run's newest round: {100 * res['fit_error_max']:.1f} %")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m policy_trainer.experiments", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    half_slow = ",".join(["a100-llama3-8b"] * 2 + ["a100-llama3-8b@x1.6"] * 2)
    for what, help_, d in (
            ("hidden-hardware", "the twin loop vs the policies told the wrong hardware",
             dict(requests=3000, rate=11.0, workload="azure-conv", worker_profile=half_slow, time_scale=2.0,
                  twin_window=2000, tail=0.5)),
            ("traffic-change", "the twin loop vs the starting policy and the new traffic's best heuristic",
             dict(requests=2000, rate=0.0, workload="paper-mix?rate=8>azure-code?rate=2", worker_profile="",
                  time_scale=4.0, twin_window=600, tail=0.5))):
        h = sub.add_parser(what, help=help_)
        h.add_argument("--repeats", type=int, default=3)
        h.add_argument("--requests", type=int, default=d["requests"])
        h.add_argument("--rate", type=float, default=d["rate"], help="requests per stack second (0: the workload's own)")
        h.add_argument("--workload", default=d["workload"])
        h.add_argument("--instances", type=int, default=4)
        h.add_argument("--workers", type=int, default=2)
        h.add_argument("--profile", default="a100-llama3-8b", help="what the router and the twin are told")
        h.add_argument("--worker-profile", default=d["worker_profile"],
                       help="what the workers run: one profile, or one per instance (default --profile)")
        h.add_argument("--time-scale", type=float, default=d["time_scale"])
        h.add_argument("--twin-every-s", type=float, default=20.0)
        h.add_argument("--twin-window", type=int, default=d["twin_window"])
        h.add_argument("--tail", type=float, default=d["tail"], help="share of the run, by arrival, that counts as its tail")
        h.add_argument("--window-s", type=float, default=30.0, help="the plot's rolling window, stack seconds")
        h.add_argument("--arms", default=",".join(ARMS[what]))
        h.add_argument("--out", type=Path, required=True)
        h.add_argument("--report-only", action="store_true", help="rewrite the report from DIR/<experiment>-runs.json")
    a = ap.parse_args(argv)
    a.rate = a.rate or None
    try:
        if a.repeats < 1 or a.requests < 1 or not 0 < a.tail <= 1:
            raise PhaserError("--repeats and --requests must be >= 1 and --tail in (0, 1]")
        arms = [x for x in a.arms.split(",") if x]
        known = set(ARMS[a.what])
        if set(arms) - known:
            raise PhaserError(f"unknown arm(s) {sorted(set(arms) - known)}; known: {', '.join(ARMS[a.what])}")
        real = a.worker_profile or a.profile
        truth_scales(a.profile, real.split(","))  # refuse a truth we cannot score, now
        a.out.mkdir(parents=True, exist_ok=True)
        if a.report_only:
            path = a.out / f"{a.what}-runs.json"
            if not path.exists():
                raise PhaserError(f"{path} does not exist: run the experiment first")
            res = report(json.loads(path.read_text()), a, a.out)
            print(json.dumps(res["gains"], indent=2))
            return
        # faster canary decisions than the router's defaults, so a run of a few thousand requests
        # sees promotions (the children read these)
        os.environ.setdefault("PHASER_CANARY_SHARE", "0.3")
        os.environ.setdefault("PHASER_CANARY_MIN_SAMPLES", "60")
        os.environ.setdefault("PHASER_CANARY_PROMOTE_AFTER", "150")
        runs = []
        with tempfile.TemporaryDirectory(prefix="phaser-exp-") as tmp:
            for seed in range(a.repeats):
                for arm in arms:
                    r = run_arm(arm, seed, a, Path(tmp))
                    print(f"{arm} seed {seed}: mean E2E {r['e2e_mean']:.3f} s, tail {r['e2e_mean_tail']:.3f} s, "
                          f"lost {r['lost']}, twin versions {[v['version'] for v in r['twin_versions']]}, "
                          f"fitted {r['fitted_scales']}, {r['wall_s']:.0f} s", flush=True)
                    runs.append(r)
                    (a.out / f"{a.what}-runs.json").write_text(json.dumps(runs))
        if set(arms) == known:
            res = report(runs, a, a.out)
            print(json.dumps(res["gains"], indent=2))
    except PhaserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
