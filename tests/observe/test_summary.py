"""The run summary's serving conventions (``services.summary``): counts, ms tables,
ITL over every token, throughput, goodput at the shared SLO, host-behind."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import protos
from phaser.slo import SLO, goodput
from services.summary import HOST_BEHIND_S, Tally, render


def _c(i: int, *, arrival=0.0, ttft=0.1, out=11, decode=1.0, tbt_p99=0.12, status="ok") -> protos.Completion:
    first = arrival + ttft
    return protos.Completion(
        request_id=f"r{i}", instance=0, status=status, arrival_s=arrival, admitted_s=arrival, first_token_s=first,
        finish_s=first + decode, ttft_s=ttft, tbt_mean_s=decode / (out - 1) if out > 1 else 0.0, tbt_p99_s=tbt_p99,
        tbt_max_s=tbt_p99, e2e_s=ttft + decode, router_wait_s=0.01, queue_wait_s=0.0, preemptions=0,
        prompt_tokens=5, output_tokens=out if status == "ok" else 0)


def test_itl_throughput_goodput_and_counts():
    t = Tally({f"r{i}" for i in range(5)}, 1)
    t.add(_c(0, arrival=0.0, out=11, decode=1.0), now_stack=1.2)         # 10 gaps, 1.0 s
    t.add(_c(1, arrival=1.0, out=21, decode=4.0, ttft=3.0), now_stack=8.1)  # 20 gaps, 4.0 s; misses the TTFT SLO
    t.add(_c(2, arrival=2.0, out=1, decode=0.0), now_stack=2.2)           # one token: no gap
    t.add(_c(3, status="rejected"), now_stack=0.5)
    t.add(_c(0), now_stack=9.0)  # a duplicate
    s = t.summary()
    assert (s["requested"], s["completed"], s["rejected"], s["lost"], s["duplicates"]) == (5, 3, 1, 1, 1)
    assert s["lost_ids"] == ["r4"]
    assert s["itl_mean_s"] == pytest.approx(5.0 / 30)  # every gap counts once, not each request's mean
    assert s["tpot_mean_s"] == pytest.approx((0.1 + 0.2) / 2)  # per request, requests with one token excluded
    assert s["span_s"] == pytest.approx(8.0) and s["request_throughput_rps"] == pytest.approx(3 / 8.0)
    assert s["output_throughput_tps"] == pytest.approx(33 / 8.0)
    # goodput: r0 and r2 met the SLO; r1 missed TTFT; rejected r3 and lost r4 count as missing it
    assert s["goodput"] == pytest.approx(2 / 5) and s["goodput_rps"] == pytest.approx(2 / 8.0)
    assert s["host_behind"] is False and s["delivery_delay_max_s"] == pytest.approx(0.1)


def test_goodput_is_one_definition():
    slo = SLO(ttft_s=1.0, tbt_s=0.1)
    rs = [_c(0, ttft=0.5, tbt_p99=0.05), _c(1, ttft=1.5, tbt_p99=0.05), _c(2, ttft=0.5, tbt_p99=0.5)]
    assert goodput(rs, 1, slo) == pytest.approx(1 / 4)
    from phaser.bench.leaderboard import goodput as board_goodput

    assert board_goodput(rs, 1, 1.0, 0.1) == goodput(rs, 1, slo)


def test_the_table_is_in_milliseconds_and_says_when_the_host_fell_behind():
    t = Tally({"r0", "r1"}, 1)
    t.add(_c(0), now_stack=1.1 + 5 * HOST_BEHIND_S)
    t.add(_c(1), now_stack=1.1 + 5 * HOST_BEHIND_S)
    s = t.summary()
    assert s["host_behind"] is True
    buf = io.StringIO()
    con = Console(file=buf, width=200)
    for tab in render(s):
        con.print(tab)
    text = buf.getvalue()
    assert "latency (stack ms)" in text and "100.0" in text  # TTFT 0.1 s printed as 100.0 ms
    assert "host behind" in text
