import json

from phaser.bench.runner import ROW_FIELDS, run_one
from phaser.bench.scenarios import Scenario
from phaser.cli.main import main


REQUIRED = {"scenario", "policy", "workload", "instances", "profile", "seed", "n_requests", "e2e_mean", "e2e_p50",
            "e2e_p90", "e2e_p99", "ttft_mean", "ttft_p99", "tbt_mean", "tbt_p99", "router_wait_mean", "preemptions",
            "simulated_seconds", "wall_seconds", "config"}


def test_run_one_row_carries_every_field():
    sc = Scenario("tiny", "paper-mix", 2, "a100-llama3-8b", 20.0, 60)
    row, recs = run_one(sc, "least-tokens", 4, keep_records=True)
    assert REQUIRED <= set(row) and set(ROW_FIELDS) <= set(row)
    assert row["n_requests"] == 60 == len(recs)
    assert row["config"]["scenario"]["instances"] == 2 and row["config"]["sim"]
    assert row["e2e_p50"] <= row["e2e_p90"] <= row["e2e_p99"]
    json.dumps(row)


def test_cli_json_and_user_errors(tmp_path, capsys):
    out = tmp_path / "rows.json"
    rc = main(["bench", "--workload", "paper-mix", "--instances", "2", "--profile", "a100-llama3-8b",
               "--requests", "50", "--rate", "10", "--policies", "round-robin,workload-aware", "--repeat", "2",
               "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 4 and all(REQUIRED <= set(r) for r in rows)
    assert "vs RR" in capsys.readouterr().out
    assert main(["bench", "--scenario", "nope"]) == 2
    assert main(["bench", "--workload", "paper-mix"]) == 2
    assert main(["bench", "--rate", "-3"]) == 2


def test_cli_capacity_in_the_simulator(tmp_path):
    out = tmp_path / "cap.json"
    rc = main(["bench", "--workload", "paper-mix", "--instances", "1", "--profile", "a100-llama3-8b",
               "--rate", "20", "--capacity", "--capacity-horizon", "10", "--policies", "round-robin",
               "--slo-ttft-p99", "1.0", "--slo-tbt-p99", "0.5", "--json", str(out)])
    assert rc == 0
    (row,) = json.loads(out.read_text())
    assert row["policy"] == "round-robin" and row["horizon_s"] == 10.0
    cap = row["capacity_rps"]
    assert cap > 0 and row["bracket"][0] == cap < row["bracket"][1]
    # every probe's verdict is its SLO check, and the answer is the best passing probe
    for rate, ok, ttft, tbt in row["probes"]:
        assert ok == (ttft <= 1.0 and tbt <= 0.5)
    assert cap == max(r for r, ok, *_ in row["probes"] if ok)
    assert any(not ok and r > cap for r, ok, *_ in row["probes"])
    assert main(["bench", "--scenario", "paper-v100", "--capacity", "--capacity-horizon", "0"]) == 2
    assert main(["bench", "--scenario", "paper-v100", "--heartbeat-delay", "-1", "--policies", "round-robin",
                 "--requests", "20"]) == 2


def test_cli_plot_writes_one_png_per_scenario(tmp_path):
    plots = tmp_path / "plots"
    rc = main(["bench", "--scenario", "paper-v100,paper-a100", "--requests", "80", "--rate", "5,10",
               "--policies", "round-robin,least-requests", "--repeat", "2", "--plot", str(plots)])
    assert rc == 0
    pngs = sorted(plots.glob("*.png"))
    assert [p.name for p in pngs] == ["latency_vs_load_paper-a100.png", "latency_vs_load_paper-v100.png"]
    for p in pngs:
        data = p.read_bytes()
        assert len(data) > 10_000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_keeps_scenarios_sharing_a_workload_apart(tmp_path):
    from phaser.bench.plots import latency_vs_load

    rows = [{"scenario": sc, "workload": "paper-mix", "instances": 4, "profile": "a100-llama3-8b", "policy": "rr",
             "rate": rate, "e2e_mean": 1.0 + rate, "ttft_p99": 0.1, "tbt_p99": 0.05 * rate}
            for sc in ("paper-a100", "custom:paper/mix?x") for rate in (1.0, 2.0)]
    paths = latency_vs_load(rows, tmp_path, slo_ttft_p99=2.0, slo_tbt_p99=0.2)
    assert sorted(p.name for p in paths) == ["latency_vs_load_custom_paper_mix_x.png", "latency_vs_load_paper-a100.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_cli_stale_view_sweep_rows_and_baseline_per_delay(tmp_path, capsys):
    from phaser.bench.runner import aggregate

    out = tmp_path / "rows.json"
    rc = main(["bench", "--workload", "paper-mix", "--instances", "2", "--profile", "a100-llama3-8b",
               "--requests", "80", "--rate", "10", "--policies", "round-robin,least-requests",
               "--heartbeat-delay", "0,2", "--completion-delay", "0,3", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 8
    assert {(r["heartbeat_delay_s"], r["completion_delay_s"]) for r in rows} == {(0, 0), (0, 3), (2, 0), (2, 3)}
    assert all(r["config"]["sim"]["completion_delay_s"] == r["completion_delay_s"] for r in rows)
    agg = aggregate(rows)
    assert len(agg) == 8  # delays are not pooled as repeats
    rr = [a for a in agg if a["policy"] == "round-robin"]
    assert all(a["improvement_vs_rr_pct"] == 0.0 for a in rr)  # each delay has its own baseline
    # round robin never reads the view: delays cannot change it; least-requests does read completions
    assert len({a["e2e_mean"] for a in rr}) == 1
    lr = {(a["heartbeat_delay_s"], a["completion_delay_s"]): a["e2e_mean"] for a in agg if a["policy"] == "least-requests"}
    assert lr[(0, 3)] != lr[(0, 0)]
    text = capsys.readouterr().out
    assert "heartbeat delay 2 s, completion delay 3 s: " in text
    assert main(["bench", "--scenario", "paper-v100", "--capacity", "--heartbeat-delay", "0,1"]) == 2


def test_json_config_of_a_custom_run_names_its_real_cluster(tmp_path):
    """A --workload FILE run on 1 x a100-llama2-7b records that cluster, not SimConfig's defaults."""
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" +
                     "".join(f"{0.2 * i},{40 + i},{10 + i}\n" for i in range(20)))
    out = tmp_path / "rows.json"
    rc = main(["bench", "--workload", str(trace), "--instances", "1", "--profile", "a100-llama2-7b",
               "--policies", "round-robin", "--json", str(out)])
    assert rc == 0
    (row,) = json.loads(out.read_text())
    sim = row["config"]["sim"]
    assert sim["instances"] == 1 and sim["profile"] == "a100-llama2-7b"
    assert sim["profiles"] == ["a100-llama2-7b"]
    assert row["instances"] == 1 and row["profile"] == "a100-llama2-7b"


def test_requests_no_instance_can_serve_are_announced_counted_and_an_all_refused_workload_is_an_error(tmp_path, capsys):
    out = tmp_path / "rows.json"
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,20\n0.5,9000,300\n1.0,120,30\n")
    assert main(["bench", "--workload", str(trace), "--instances", "1", "--profile", "a100-llama3-8b",
                 "--policies", "round-robin", "--json", str(out)]) == 0
    assert "1 of 3 requests exceed a100-llama3-8b" in capsys.readouterr().err
    (row,) = json.loads(out.read_text())
    assert row["rejected"] == 1 and row["n_requests"] == 2
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,9000,20\n")
    assert main(["bench", "--workload", str(trace), "--instances", "1", "--profile", "a100-llama3-8b"]) == 2
    assert "no request of" in capsys.readouterr().err


def test_scheduler_modes_are_a_bench_option_and_prefill_first_pauses_decodes():
    sc = Scenario("tiny", "paper-mix", 1, "a100-llama2-7b", 6.0, 300)
    mixed, _ = run_one(sc, "round-robin", 0)
    v0, _ = run_one(sc.with_(scheduler="vllm-v0"), "round-robin", 0)
    assert v0["config"]["sim"]["scheduler"] == "vllm-v0"
    assert v0["tbt_p99"] > mixed["tbt_p99"]  # a decode waits through whole prefill-only iterations
    assert main(["bench", "--scenario", "paper-v100", "--scheduler", "vllm-v9"]) == 2
