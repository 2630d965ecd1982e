"""A real Prometheus scrapes a real ``phaser up`` stack driven with a known load,
and **every PromQL expression of the Grafana dashboard** is evaluated against
it: each must return data that agrees with what the load did (read back from
``completions`` and the run's summary), not merely a series.

Prometheus is Debian's package (``apt-get install prometheus``; ``.ci/run``
installs it). Without the binary this module is skipped with one line, unless
``PHASER_REQUIRE_PROMETHEUS=1`` (CI), where that is an error. The broker is
tansu only: metrics do not depend on the broker (the Kafka tier covers the
services themselves).

How the checks read (decisions):

* ``phaser up --load-delay 5`` lets Prometheus (1 s scrapes) find and scrape
  every target before the first request, so every counter's first sample is 0.
* ``$__rate_interval`` is replaced by a window that covers the whole run, and
  expressions are evaluated a few scrapes after the load ended, so
  ``rate(x) * window`` is the run's total (within a scrape of extrapolation:
  tolerance 8 %), ``increase`` the total itself.
* Quantiles from histograms must fall in the bucket of the true quantile (of
  the completions read back) or an adjacent one: that is the resolution a
  histogram has. Means (``_sum / _count``) must be within 3 %.
* Gauges are evaluated at the end (an idle stack: nothing outstanding,
  queued, running, in KV) and over the run with ``max_over_time`` (something
  was, while the load ran).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from bisect import bisect_left
from pathlib import Path

import numpy as np
import pytest

from phaser.buckets import LATENCY_BOUNDS_S
from services.metrics import DECISION_BUCKETS_S, REQUEST_BUCKETS_S

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "phaser.json"
PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)

REQUESTS, RATE, TIME_SCALE, INSTANCES = 400, 5.0, 2.0, 4
POISON = (b"{not json", b'{"v": 2, "id": "obs-bad", "arrival_s": 1.0}', b'{"v": 99, "id": "x", "prompt_tokens": 1}')

pytestmark = pytest.mark.timeout(420)


def _require():
    if PROMETHEUS is None:
        msg = "no prometheus binary (apt-get install prometheus): the Prometheus tier is skipped"
        if os.environ.get("PHASER_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def _get(url: str, timeout: float = 10.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class Prom:
    def __init__(self, base: str):
        self.base = base

    def instant(self, expr: str, t: float) -> list[tuple[dict, float]]:
        q = urllib.parse.urlencode({"query": expr, "time": f"{t:.3f}"})
        d = _get(f"{self.base}/api/v1/query?{q}")
        assert d["status"] == "success", (expr, d)
        return [(r["metric"], float(r["value"][1])) for r in d["data"]["result"]]


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """Run the stack once under a real Prometheus; yield what the checks need."""
    _require()
    from services.broker import EmbeddedBroker, free_port

    tmp = tmp_path_factory.mktemp("observe")
    sd = tmp / "targets.json"
    sd.write_text("[]")
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: phaser\n"
        f"    file_sd_configs: [{{files: ['{sd}'], refresh_interval: 1s}}]\n")
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")
    prom_proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    broker = EmbeddedBroker(port=free_port(), schemas=False).start()
    up = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=2).read()
                break
            except OSError:
                if prom_proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"prometheus did not start: {(tmp / 'prometheus.log').read_text()[-2000:]}")
                time.sleep(0.3)
        t_start = time.time()
        summary_path, err_path = tmp / "summary.json", tmp / "up.log"
        up = subprocess.Popen(
            [sys.executable, "-m", "phaser.cli.main", "up", "--bootstrap", broker.bootstrap, "--topic-prefix", "obs-",
             "--requests", str(REQUESTS), "--rate", str(RATE), "--time-scale", str(TIME_SCALE),
             "--instances", str(INSTANCES), "--workers", "2", "--metrics-port", "0", "--metrics-sd", str(sd),
             "--linger", "60", "--load-delay", "5", "--json", str(summary_path), "--no-monitor", "--drain-timeout", "60"],
            stdout=subprocess.DEVNULL, stderr=open(err_path, "wb"), cwd=ROOT)

        def _wait_for(pred, what, timeout_s):
            end = time.monotonic() + timeout_s
            while not pred():
                if up.poll() is not None:
                    raise AssertionError(f"phaser up exited ({up.returncode}) before {what}: {err_path.read_text()[-3000:]}")
                if time.monotonic() > end:
                    raise AssertionError(f"timed out waiting for {what}: {err_path.read_text()[-3000:]}")
                time.sleep(0.2)

        _wait_for(lambda: sd.read_text().strip() not in ("", "[]"), "the targets file", 180)
        targets = json.loads(sd.read_text())

        def _all_scraped():
            act = _get(f"{base}/api/v1/targets")["data"]["activeTargets"]
            return len(act) == len(targets) and all(t["health"] == "up" for t in act)

        _wait_for(_all_scraped, "Prometheus to scrape every target", 60)  # within --load-delay
        _publish_poison(broker.bootstrap)
        _wait_for(lambda: "stays up" in err_path.read_text(errors="replace"), "the end of the load", 360)
        time.sleep(4.0)  # a few scrapes of the idle, finished stack
        t_eval = time.time()
        active = _get(f"{base}/api/v1/targets")["data"]["activeTargets"]
        mon = subprocess.run([sys.executable, "-m", "phaser.cli.main", "monitor", "--bootstrap", broker.bootstrap,
                              "--topic-prefix", "obs-", "--once", "--json"], capture_output=True, text=True, timeout=120)
        assert mon.returncode == 0, mon.stderr
        up.terminate()  # the stack stops in order; the summary is written on the way out
        up.wait(120)
        summary = json.loads(summary_path.read_text())
        completions = _read_completions(broker.bootstrap)
        yield {"prom": Prom(base), "t_eval": t_eval, "window_s": math.ceil(t_eval - t_start) + 5,
               "summary": summary, "completions": completions, "targets": targets, "active": active,
               "monitor": json.loads(mon.stdout)}
    finally:
        if up is not None and up.poll() is None:
            up.kill()
            up.wait(30)
        broker.stop()
        prom_proc.terminate()
        try:
            prom_proc.wait(30)
        except subprocess.TimeoutExpired:
            prom_proc.kill()
        log.close()


def _publish_poison(bootstrap: str) -> None:
    import asyncio

    from services.kafka import make_producer

    async def go():
        p = make_producer(bootstrap, client_id="obs-poison")
        await p.start()
        try:
            for raw in POISON:
                await (await p.send("obs-requests", raw))
        finally:
            await p.stop()

    asyncio.run(go())


def _read_completions(bootstrap: str) -> list:
    import asyncio

    from services.kafka import Topics, read_back

    got, complete = asyncio.run(read_back(bootstrap, Topics("obs-"), "completions", [0], timeout_s=60))
    assert complete
    by_id = {}
    for c in got:
        by_id.setdefault(c.request_id, c)
    return list(by_id.values())


# ------------------------------------------------------------------ helpers of the checks
def _bucket(bounds, v: float) -> int:
    return bisect_left(bounds, v)


def _near_bucket(bounds, est: float, truth: float) -> None:
    assert math.isfinite(est), est
    assert abs(_bucket(bounds, est) - _bucket(bounds, truth)) <= 1, f"estimate {est:.4g} vs truth {truth:.4g}"


def _close(est: float, truth: float, rel: float, abs_: float = 0.0) -> None:
    assert abs(est - truth) <= rel * abs(truth) + abs_, f"{est:.6g} vs {truth:.6g}"


class Ctx:
    def __init__(self, obs):
        self.obs = obs
        self.prom: Prom = obs["prom"]
        self.w = obs["window_s"]
        self.ok = [c for c in obs["completions"] if c.status == "ok"]

    def q(self, expr: str) -> list[tuple[dict, float]]:
        e = expr.replace("$__rate_interval", f"{self.w}s")
        return self.prom.instant(e, self.obs["t_eval"])

    def one(self, expr: str) -> float:
        r = self.q(expr)
        assert len(r) == 1, (expr, r)
        return r[0][1]

    def over_run(self, expr: str) -> list[tuple[dict, float]]:
        """``max_over_time`` of the expression across the run (a subquery at 1 s resolution)."""
        e = expr.replace("$__rate_interval", f"{self.w}s")
        return self.prom.instant(f"max_over_time(({e})[{self.w}s:1s])", self.obs["t_eval"])

    def total(self, expr: str) -> float:
        """rate(...) over the whole run x the window: the run's total."""
        return self.one(expr) * self.w

    def pct(self, field: str, p: float, rows=None) -> float:
        return float(np.percentile([getattr(c, field) for c in (rows or self.ok)], p))

    def per_instance(self, expr: str) -> dict[str, float]:
        r = self.q(expr)
        got = {m["instance_index"]: v for m, v in r}
        assert set(got) == {str(i) for i in range(INSTANCES)}, (expr, r)
        return got


def _quantiles(ctx: Ctx, refs: dict, field: str, bounds, rows=None):
    for expr in refs.values():
        x = 0.5 if expr.startswith("histogram_quantile(0.5,") else 0.99
        assert expr.startswith(f"histogram_quantile({x},"), expr
        _near_bucket(bounds, ctx.one(expr), ctx.pct(field, x * 100, rows))


# ------------------------------------------------------------------ one check per panel
def c_requests_sent(ctx, t):
    _close(ctx.total(t["A"]), REQUESTS, 0.08)


def c_completions(ctx, t):
    got = {m["status"]: v * ctx.w for m, v in ctx.q(t["A"])}
    assert set(got) == {"ok", "rejected", "error"}, got
    _close(got["ok"], len(ctx.ok), 0.08)
    assert got["rejected"] == got["error"] == 0


def c_output_tokens(ctx, t):
    _close(ctx.total(t["A"]), sum(c.output_tokens for c in ctx.ok), 0.08)


def c_ttft(ctx, t):
    _quantiles(ctx, t, "ttft_s", REQUEST_BUCKETS_S)


def c_itl(ctx, t):
    rows = [c for c in ctx.ok if c.output_tokens > 1]
    gaps = sum(c.finish_s - c.first_token_s for c in rows)
    n_gaps = sum(c.output_tokens - 1 for c in rows)
    _close(ctx.one(t["C"]), gaps / n_gaps, 0.03)  # the mean gap over every token: exact
    p50, p99 = ctx.one(t["A"]), ctx.one(t["B"])
    _near_bucket(LATENCY_BOUNDS_S, p50, ctx.pct("tbt_mean_s", 50, rows))  # at this load gaps ~ per-request means
    assert p50 <= p99 <= max(c.tbt_max_s for c in rows) * 1.5, (p50, p99)


def c_e2e(ctx, t):
    _quantiles(ctx, {k: t[k] for k in ("A", "B")}, "e2e_s", REQUEST_BUCKETS_S)
    _close(ctx.one(t["C"]), float(np.mean([c.e2e_s for c in ctx.ok])), 0.03)


def c_queue(ctx, t):
    _near_bucket(REQUEST_BUCKETS_S, ctx.one(t["A"]), ctx.pct("queue_wait_s", 99))


def c_router_wait(ctx, t):
    _quantiles(ctx, t, "router_wait_s", REQUEST_BUCKETS_S)


def c_decisions(ctx, t):
    got = {(m["policy"], m["version"]): v * ctx.w for m, v in ctx.q(t["A"])}
    assert set(got) == {("round-robin", "0")}, got
    _close(got[("round-robin", "0")], REQUESTS, 0.08)


def c_decision_duration(ctx, t):
    v = ctx.one(t["A"])
    assert DECISION_BUCKETS_S[0] / 10 < v < 0.25, v  # wall seconds of one decision: microseconds to a few ms


def c_queue_len(ctx, t):
    assert ctx.one(t["A"]) == 0


def c_outstanding(ctx, t):
    assert all(v == 0 for v in ctx.per_instance(t["A"]).values())
    peak = {m["instance_index"]: v for m, v in ctx.over_run(t["A"])}
    assert len(peak) == INSTANCES and all(v >= 1 for v in peak.values()), peak


def c_running(ctx, t):
    assert all(v == 0 for v in ctx.per_instance(t["A"]).values())
    assert all(v >= 1 for _, v in ctx.over_run(t["A"]))


def c_kv_usage(ctx, t):
    assert all(v == 0 for v in ctx.per_instance(t["A"]).values())
    peaks = [v for _, v in ctx.over_run(t["A"])]
    assert len(peaks) == INSTANCES and all(0 < v <= 1 for v in peaks), peaks


def c_kv_tokens(ctx, t):
    for ref in ("A", "B"):
        assert abs(ctx.one(t[ref])) < 1e-6
        assert ctx.over_run(t[ref])[0][1] > 0


def c_instances_up(ctx, t):
    assert ctx.one(t["A"]) == INSTANCES


def c_heartbeat_age(ctx, t):
    v = ctx.one(t["A"])
    assert 0 <= v <= 5.0 * TIME_SCALE, v  # within the failover limit (5 wall s) on an idle stack


def c_preemptions(ctx, t):
    _close(ctx.total(t["A"]), sum(c.preemptions for c in ctx.ok), 0.08, abs_=1.0)


def c_policy_events(ctx, t):
    got = {m["kind"]: v for m, v in ctx.q(t["A"])}
    assert set(got) >= {"canary", "promoted", "rolled_back"} and all(v == 0 for v in got.values()), got  # no swap


def c_lag(ctx, t):
    got = {(m["group"], m["topic"]): v for m, v in ctx.q(t["A"])}
    want = {("phaser-router", "requests"), ("phaser-router", "completions"), ("phaser-router", "instance-status"),
            ("phaser-worker", "assignments"), ("phaser-trainer", "assignments"), ("phaser-trainer", "completions"),
            ("phaser-trainer", "instance-status")}
    assert set(got) == want, got  # exactly what each group consumes
    for k in (("phaser-router", "requests"), ("phaser-worker", "assignments"), ("phaser-router", "completions")):
        assert got[k] == 0, (k, got)  # an idle, finished stack has nothing left to read on the request path
    hb_per_s = INSTANCES / 0.5 * TIME_SCALE  # heartbeats per wall second
    for k, v in got.items():
        assert 0 <= v <= 5 * hb_per_s + 10, (k, v)  # at most a few commit periods of heartbeats


def c_consumed(ctx, t):
    got = {(m["group"], m["topic"]): v * ctx.w for m, v in ctx.q(t["A"])}
    _close(got[("phaser-router", "requests")], REQUESTS + len(POISON), 0.08)
    _close(got[("phaser-worker", "assignments")], REQUESTS, 0.08)
    _close(got[("phaser-router", "completions")], REQUESTS, 0.08)


def c_dead_letters(ctx, t):
    got = {(m["topic"], m["kind"]): v for m, v in ctx.q(t["A"])}
    assert round(got[("requests", "invalid")]) == len(POISON), got
    assert all(v == 0 for k, v in got.items() if k != ("requests", "invalid")), got


def c_transitions(ctx, t):
    n = ctx.total(t["A"])
    assert 0.5 * len(ctx.ok) <= n <= 1.08 * len(ctx.ok), (n, len(ctx.ok))


CHECKS = {
    "Requests sent /s (load generator)": c_requests_sent,
    "Completions /s by status": c_completions,
    "Output tokens /s": c_output_tokens,
    "TTFT (stack s)": c_ttft,
    "ITL, every token (stack s)": c_itl,
    "E2E (stack s)": c_e2e,
    "Engine queue time (stack s)": c_queue,
    "Router wait (stack s)": c_router_wait,
    "Router decisions /s by policy version": c_decisions,
    "Router decision duration (wall s)": c_decision_duration,
    "Router queue length": c_queue_len,
    "Outstanding per instance (router view)": c_outstanding,
    "Running per instance (heartbeats)": c_running,
    "KV cache usage per instance": c_kv_usage,
    "KV tokens: router estimate vs heartbeat": c_kv_tokens,
    "Instances up (router)": c_instances_up,
    "Heartbeat age, worst instance (stack s)": c_heartbeat_age,
    "Preemptions /s": c_preemptions,
    "Canary and rollback events": c_policy_events,
    "Consumer lag (records)": c_lag,
    "Consumed records /s": c_consumed,
    "Dead letters": c_dead_letters,
    "Trainer transitions /s": c_transitions,
}


def _panels():
    return json.loads(DASHBOARD.read_text())["panels"]


def test_the_dashboard_is_well_formed_and_every_panel_has_a_check():
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] and d["title"] and isinstance(d["panels"], list)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert p["type"] == "timeseries" and p["datasource"]["uid"] == "prometheus"
        assert {"h", "w", "x", "y"} <= set(p["gridPos"])
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"].strip() for t in p["targets"])
    assert {p["title"] for p in d["panels"]} == set(CHECKS), "a panel without a check (or a check without a panel)"


def test_every_target_is_scraped(observed):
    names = {t["labels"]["process"] for t in observed["targets"]}
    assert {"load", "router", "worker-0-1", "worker-2-3", "trainer"} <= names
    health = {t["labels"].get("process"): t["health"] for t in observed["active"]}
    assert all(health.get(n) == "up" for n in names), health
    assert set(observed["summary"]["metrics"]) == names


@pytest.mark.parametrize("title", list(CHECKS))
def test_every_dashboard_expression_agrees_with_the_load(observed, title):
    assert observed["summary"]["lost"] == 0 and observed["summary"]["completed"] == REQUESTS
    (panel,) = [p for p in _panels() if p["title"] == title]
    ctx = Ctx(observed)
    for tgt in panel["targets"]:
        assert ctx.q(tgt["expr"]), f"{title} [{tgt['refId']}]: no data for {tgt['expr']}"
    CHECKS[title](ctx, {tgt["refId"]: tgt["expr"] for tgt in panel["targets"]})


def test_the_monitor_agrees_with_the_summary_and_prometheus(observed):
    """``phaser monitor --once --json`` on the same stack: its counts are the summary's, its
    percentiles the summary's (the same completions, the same interpolation) and within a
    bucket of Prometheus' histogram quantiles."""
    mon, summ, ctx = observed["monitor"], observed["summary"], Ctx(observed)
    assert mon["completions"] == summ["completed"] == REQUESTS
    assert mon["totals"]["requests"] == REQUESTS + len(POISON) and mon["totals"]["assignments"] == REQUESTS
    assert mon["totals"]["dead-letters"] == len(POISON)
    for key, field in (("ttft", "ttft_s"), ("e2e", "e2e_s"), ("router_wait", "router_wait_s")):
        for p in ("p50", "p99"):
            assert mon["latency_s"][field][p] == pytest.approx(summ[f"{key}_{p}_s"], rel=1e-9), (field, p)
    for metric, field in (("phaser_request_e2e_seconds", "e2e_s"), ("phaser_request_ttft_seconds", "ttft_s")):
        for x, p in ((0.5, "p50"), (0.99, "p99")):
            est = ctx.one(f"histogram_quantile({x}, sum by (le) (rate({metric}_bucket[$__rate_interval])))")
            _near_bucket(REQUEST_BUCKETS_S, est, mon["latency_s"][field][p])
    assert mon["lag_by_topic"]["phaser-router"]["requests"] == 0 and mon["lag"]["phaser-worker"] == 0
    # per-instance load from the heartbeats: the finished stack is idle, like Prometheus' gauges
    assert set(mon["instances"]) == {str(i) for i in range(INSTANCES)}
    assert all(v["running"] == 0 and v["kv_used"] == 0 and v["health"] == "ok" for v in mon["instances"].values())
