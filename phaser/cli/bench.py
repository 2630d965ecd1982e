"""phaser bench: routing policies in the virtual-time simulator.

    phaser bench --scenario paper-v100 --policies all --repeat 5
    phaser bench --workload my.csv --instances 4 --profile a100-llama3-8b --rate 10,20,40 --plot out/
    phaser bench --scenario paper-v100 --policies all --capacity
    phaser bench --scenario azure-code --policies round-robin,workload-aware --completion-delay 0,0.5,2
    phaser bench router-latency
    phaser bench headroom --scenario paper-v100 --repeat 5
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from phaser.cli._common import policy_help, policy_epilog

from phaser.errors import PhaserError


def _rates(spec: str | None) -> list[float | None]:
    if not spec:
        return [None]
    try:
        rates = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise PhaserError(f"bad --rate {spec!r}: use e.g. 20 or 10,20,40") from None
    if not rates or min(rates) <= 0:
        raise PhaserError(f"bad --rate {spec!r}: rates must be > 0 req/s")
    return rates


def _delays(spec: str | None, flag: str) -> list[float | None]:
    """'0,0.1,0.5,2' -> [0.0, 0.1, 0.5, 2.0] (a sweep); None -> [None] (the simulator's default)."""
    if spec is None or not spec.strip():
        return [None]
    try:
        vals = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise PhaserError(f"bad {flag} {spec!r}: use seconds, e.g. 0.5 or 0,0.1,0.5,2") from None
    if not vals or min(vals) < 0:
        raise PhaserError(f"bad {flag} {spec!r}: delays must be >= 0 s")
    return list(dict.fromkeys(vals))


def _print_whole(console, table) -> None:
    """Print a table at the width it needs, never truncating a cell (CIs are wide)."""
    from rich.console import Console

    need = Console(width=100_000).measure(table).maximum
    if need > console.width:
        console = Console(width=need, file=console.file)
    console.print(table)


def _kv_options(items: list[str]) -> dict:
    out: dict = {}
    for it in items:
        if "=" not in it:
            raise PhaserError(f"bad --policy-opt {it!r}: use KEY=VALUE")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _records_path(base: Path, row: dict, many: bool) -> Path:
    if not many:
        return base
    tag = f"{row['scenario'].replace(':', '_').replace('/', '_')}.{row['policy']}.r{row['rate']}.s{row['seed']}"
    for key, short in (("heartbeat_delay_s", "hb"), ("completion_delay_s", "cd")):
        if row.get(key) is not None:
            tag += f".{short}{row[key]:g}"
    return base.with_name(f"{base.stem}.{tag}{base.suffix}")


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(help="Benchmark routing policies in the simulator.", no_args_is_help=False,
                            epilog=policy_epilog())
    app.add_typer(bench_app, name="bench")
    _register_engine_fidelity(bench_app)
    _register_vidur_compare(bench_app)
    _register_leaderboard(bench_app)

    @bench_app.callback(invoke_without_command=True)
    def bench(
        ctx: typer.Context,
        scenario: Optional[str] = typer.Option(None, "--scenario", envvar="PHASER_BENCH_SCENARIO",
                                               help="Built-in scenario(s), comma-separated: paper-v100, paper-a100, "
                                                    "paper-a100-chunked, paper-8x, paper-v100-16gb, azure-conv, azure-code, prefix-heavy."),
        workload: Optional[str] = typer.Option(None, "--workload", envvar="PHASER_BENCH_WORKLOAD",
                                               help="Workload name or file (instead of --scenario)."),
        instances: Optional[int] = typer.Option(None, "--instances", envvar="PHASER_BENCH_INSTANCES", min=1,
                                                help="Instance count (overrides the scenario's)."),
        profile: Optional[str] = typer.Option(None, "--profile", "--profile-file", envvar="PHASER_BENCH_PROFILE",
                                              help="Latency profile name or file, e.g. from `phaser calibrate` "
                                                   "(overrides the scenario's)."),
        rate: Optional[str] = typer.Option(None, "--rate", envvar="PHASER_BENCH_RATE",
                                           help="Request rate(s) in req/s, comma-separated (overrides the scenario's)."),
        requests: Optional[int] = typer.Option(None, "--requests", envvar="PHASER_BENCH_REQUESTS",
                                               help="Number of requests (overrides the scenario's)."),
        chunked: Optional[bool] = typer.Option(None, "--chunked/--no-chunked", help="Chunked prefill on/off."),
        max_batched_tokens: Optional[int] = typer.Option(None, "--max-batched-tokens",
                                                         help="Max batched tokens per iteration (chunked prefill)."),
        policies: str = typer.Option("all", "--policies", envvar="PHASER_BENCH_POLICIES",
                                     help=policy_help("Comma-separated policy names, or 'all' (every heuristic)")),
        repeat: int = typer.Option(1, "--repeat", envvar="PHASER_BENCH_REPEAT", help="Seeds per run (mean ± 95% CI)."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="First seed; repeats use seed..seed+K-1."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", envvar="PHASER_CHECKPOINT",
                                                  help="Checkpoint for rl-* policies (default: the one shipped "
                                                       "for each variant in phaser/checkpoints/, any instance count)."),
        policy_opt: list[str] = typer.Option([], "--policy-opt", help="KEY=VALUE option passed to every policy "
                                             "(e.g. alpha=0.5 for workload-aware); repeatable."),
        heartbeat_delay: Optional[str] = typer.Option(None, "--heartbeat-delay", envvar="PHASER_HEARTBEAT_DELAY",
                                                      help="Delay (s) of heartbeats reaching the router view; "
                                                           "comma-separated values sweep it (stale-view cost)."),
        completion_delay: Optional[str] = typer.Option(None, "--completion-delay", envvar="PHASER_COMPLETION_DELAY",
                                                       help="Delay (s) of completions reaching the router view; "
                                                            "comma-separated values sweep it."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write one JSON row per run to PATH."),
        markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="Write the results as markdown tables to "
                                                     "PATH (a table per scenario and rate, the paired gain over round "
                                                     "robin with its 95 % CI)."),
        plot_dir: Optional[Path] = typer.Option(None, "--plot", help="Write latency-vs-load PNGs to DIR (one per "
                                                "scenario, a line per policy, the SLOs dashed; one rate: a bar per "
                                                "policy), or to PATH.png when the run makes one figure."),
        records: Optional[Path] = typer.Option(None, "--records", help="Per-request records (.jsonl or .csv); "
                                               "several runs get the run in the file name."),
        capacity: bool = typer.Option(False, "--capacity", help="Find each policy's capacity at the SLO by bisection."),
        capacity_horizon: Optional[float] = typer.Option(
            None, "--capacity-horizon", envvar="PHASER_CAPACITY_HORIZON",
            help="Seconds of arrivals each capacity probe simulates (default: the scenario's requests / rate)."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", envvar="PHASER_BENCH_SCHEDULER",
                                                help="Engine scheduling mode: mixed (default), vllm-v0 (prefill-first, "
                                                     "the paper's and Vidur's vLLM), vllm-v1 (chunked)."),
        slo_ttft_p99: float = typer.Option(2.0, "--slo-ttft-p99", envvar="PHASER_SLO_TTFT_P99",
                                           help="SLO: p99 TTFT in seconds (capacity search, plots)."),
        slo_tbt_p99: float = typer.Option(0.2, "--slo-tbt-p99", envvar="PHASER_SLO_TBT_P99",
                                          help="SLO: p99 time between tokens in seconds (capacity search, plots)."),
    ) -> None:
        """Run policies x scenarios x rates x seeds in the simulator and print a table."""
        if ctx.invoked_subcommand is not None:
            return
        from rich.console import Console

        from phaser.bench import runner
        from phaser.bench.report import bench_table
        from phaser.bench.scenarios import custom_scenario, get_scenario

        if repeat < 1:
            raise PhaserError(f"--repeat must be >= 1, got {repeat}")
        if scenario and workload:
            raise PhaserError("give --scenario or --workload, not both")
        if workload:
            if not instances or not profile:
                raise PhaserError("--workload needs --instances and --profile")
            scs = [custom_scenario(workload, instances, profile, None, requests, bool(chunked), max_batched_tokens)]
        else:
            names = [s.strip() for s in (scenario or "paper-v100").split(",") if s.strip()]
            scs = [get_scenario(n).with_(instances=instances, profile=profile, n_requests=requests,
                                         chunked_prefill=chunked, max_num_batched_tokens=max_batched_tokens)
                   for n in names]
        if profile:
            from phaser.engine.profiles import get_profile

            get_profile(profile)  # fail early, with the list of names
        if scheduler:
            from phaser.engine.instance import SCHEDULERS

            if scheduler not in SCHEDULERS:
                raise PhaserError(f"unknown --scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
            scs = [s.with_(scheduler=scheduler) for s in scs]
        for s_ in scs:  # requests no instance can ever serve become rejected records; say so first
            reqs_ = runner.load_requests(s_, seed)
            n_bad, why = runner.refused(s_, reqs_)
            if n_bad == len(reqs_):
                raise PhaserError(f"no request of {s_.name} fits {s_.profile}: {why}")
            if n_bad:
                import sys

                print(f"{s_.name}: {n_bad} of {len(reqs_)} requests exceed {s_.profile}'s context "
                      f"or KV capacity and become rejected records (e.g. {why})", file=sys.stderr)
        pols = runner.resolve_policies(policies)
        common = _kv_options(policy_opt)
        from phaser.policies.base import check_options

        check_options(pols, common)

        def options_for(name: str) -> dict:
            o = dict(common)
            if runner.is_learned(name) and checkpoint is not None:  # else: the checkpoint shipped for it
                o["checkpoint"] = str(checkpoint)
            return o

        rates = _rates(rate)
        hb_delays = _delays(heartbeat_delay, "--heartbeat-delay")
        cd_delays = _delays(completion_delay, "--completion-delay")
        figures = len(scs) * len(hb_delays) * len(cd_delays)
        if plot_dir is not None and plot_dir.suffix.lower() == ".png" and figures > 1:
            raise PhaserError(f"--plot {plot_dir} names one PNG but this run makes {figures} figures "
                              "(one per scenario and view delay): give a directory")
        seeds = list(range(seed, seed + repeat))
        console = Console(stderr=True)
        out = Console(width=max(220, Console().width))  # the bench table gets the width it needs (bench_print)
        if capacity:
            if len(hb_delays) > 1 or len(cd_delays) > 1:
                raise PhaserError("--capacity takes one --heartbeat-delay / --completion-delay value, not a sweep")
            _capacity(scs, pols, seeds[0], rates, options_for, slo_ttft_p99, slo_tbt_p99, json_path, out, console,
                      capacity_horizon, hb_delays[0], cd_delays[0])
            return
        from rich.progress import Progress

        total = len(scs) * len(rates) * len(seeds) * len(pols) * len(hb_delays) * len(cd_delays)
        many = total > 1
        with Progress(console=console, transient=True) as prog:
            task = prog.add_task("simulating", total=total)

            def on_row(row, recs):
                if records is not None:
                    from phaser.sim import write_records

                    write_records(recs, _records_path(records, row, many))
                prog.update(task, advance=1, description=f"{row['scenario']} {row['policy']} seed {row['seed']}")

            rows = runner.run_grid(scs, pols, seeds, rates, policy_options=options_for,
                                   heartbeat_delays=hb_delays, completion_delays=cd_delays,
                                   on_row=on_row, keep_records=records is not None)
        agg = runner.aggregate(rows)
        _print_whole(out, bench_table(agg))
        for (scn, r, hb, cd), a in sorted(runner.strongest([a for a in agg if not runner.is_learned(a["policy"])]).items(),
                                          key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2] or 0, kv[0][3] or 0)):
            imp = a.get("improvement_vs_rr_pct")
            stale = "".join(f", {what} delay {d:g} s" for what, d in (("heartbeat", hb), ("completion", cd))
                            if d is not None)
            out.print(f"strongest heuristic on {scn}" + (f" @ {r:.1f} req/s" if r else "") + stale + f": {a['policy']}"
                      + (f" ({imp:+.2f}% mean E2E vs round-robin)" if imp is not None else ""))
        wall = sum(r["wall_seconds"] for r in rows)
        sim_s = sum(r["simulated_seconds"] for r in rows)
        nreq = sum(r["n_requests"] for r in rows)
        out.print(f"{len(rows)} runs, {nreq} requests, {sim_s:.0f} simulated s in {wall:.1f} wall s "
                  f"({sim_s / max(wall, 1e-9):.0f}x real time, {nreq / max(wall, 1e-9):.0f} requests/s)")
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(rows, indent=1))
        if markdown_path is not None:
            from phaser.bench.report import bench_markdown

            markdown_path.parent.mkdir(parents=True, exist_ok=True)
            markdown_path.write_text(bench_markdown(agg))
        if plot_dir is not None:
            from phaser.bench.plots import latency_vs_load

            for p in latency_vs_load(agg, plot_dir, slo_ttft_p99=slo_ttft_p99, slo_tbt_p99=slo_tbt_p99):
                out.print(f"wrote {p}")

    @bench_app.command("router-throughput", epilog=policy_epilog())
    def router_throughput(
        policies: str = typer.Option("workload-aware", "--policies", help=policy_help("Comma-separated policy names")),
        instances: int = typer.Option(64, "--instances", min=1, help="Instances the router routes to."),
        requests: int = typer.Option(50_000, "--requests", min=100, help="Requests routed per measurement."),
        replicas: str = typer.Option("1", "--replicas", help="Router processes in one group, comma-separated (e.g. 1,2,4)."),
        feature_share: str = typer.Option("1", "--feature-share",
                                          help="Share of assignments carrying the RL state, comma-separated (e.g. 1,0.01)."),
        profile: str = typer.Option("a100-llama3-8b", "--profile", help="Latency profile of the instances."),
        bootstrap: Optional[str] = typer.Option(None, "--bootstrap", envvar="PHASER_BOOTSTRAP",
                                                help="A Kafka to measure on (default: an embedded tansu)."),
        backlog: bool = typer.Option(False, "--backlog",
                                     help="Publish every request first, then time the routers draining the log "
                                          "(no producer competing for the cores)."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON to PATH."),
    ) -> None:
        """Decisions per second of the router process end to end: consume requests, decide, produce assignments
        acknowledged by the broker (services.router_bench)."""
        from rich.console import Console
        from rich.table import Table

        from phaser.bench import runner
        from services.router_bench import run

        pols = runner.resolve_policies(policies)
        try:
            reps = [int(x) for x in replicas.split(",") if x.strip()]
            shares = [float(x) for x in feature_share.split(",") if x.strip()]
        except ValueError:
            raise PhaserError(f"bad --replicas {replicas!r} or --feature-share {feature_share!r}: use e.g. 1,2,4 and 1,0.01") from None
        if not reps or min(reps) < 1 or max(reps) > 16 or not shares or not all(0 <= x <= 1 for x in shares):
            raise PhaserError("--replicas must be 1..16 and --feature-share in [0, 1]")
        rows = [run(bootstrap, requests, instances, p, profile, replicas=r, feature_share=f, backlog=backlog)
                for p in pols for r in reps for f in shares]
        mode = "draining a backlog" if backlog else "beside a live producer"
        t = Table(title=f"router throughput, end to end, {mode} ({requests:,} requests, {instances} instances)")
        for c in ("policy", "replicas", "feature share", "route s", "decisions/s", "publish s"):
            t.add_column(c, justify="left" if c == "policy" else "right")
        for r in rows:
            t.add_row(r["policy"], str(r["replicas"]), f"{r['feature_share']:g}", f"{r['route_s']:.2f}",
                      f"{r['decisions_per_s']:,.0f}", f"{r['publish_s']:.2f}")
        Console().print(t)
        if json_path is not None:
            json_path.write_text(json.dumps(rows, indent=1))

    @bench_app.command("router-latency", epilog=policy_epilog())
    def router_latency(
        policies: str = typer.Option("all", "--policies", envvar="PHASER_BENCH_POLICIES",
                                     help=policy_help("Comma-separated policy names, or 'all' (every heuristic; "
                                                      "rl-* join with --checkpoint, or name them for the shipped ones)")),
        instances: str = typer.Option("4,16", "--instances", help="Cluster sizes, comma-separated."),
        decisions: int = typer.Option(2000, "--decisions", help="Timed decisions per (policy, size)."),
        profile: str = typer.Option("a100-llama3-8b", "--profile", "--profile-file", envvar="PHASER_BENCH_PROFILE",
                                    help="Latency profile of the instances (name or file)."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", envvar="PHASER_CHECKPOINT",
                                                  help="Checkpoint for rl-* policies (they are included when given)."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON to PATH."),
    ) -> None:
        """Wall time of one routing decision (p50/p99 µs) per policy at 4 and 16 instances."""
        from dataclasses import asdict

        from rich.console import Console

        from phaser.bench import runner
        from phaser.bench.report import latency_table
        from phaser.bench.router_latency import measure
        from phaser.policies import available

        pols = runner.resolve_policies(policies)
        if checkpoint is not None and policies == "all":
            pols += [n for n in available() if runner.is_learned(n)]
        try:
            sizes = [int(x) for x in instances.split(",") if x.strip()]
        except ValueError:
            raise PhaserError(f"bad --instances {instances!r}: use e.g. 4,16") from None
        if not sizes or min(sizes) < 1 or decisions < 10:
            raise PhaserError("--instances must list sizes >= 1 and --decisions be >= 10")
        res = []
        for n in sizes:
            for p in pols:
                opts = {"checkpoint": str(checkpoint)} if runner.is_learned(p) and checkpoint else {}
                res.append(measure(p, n, profile=profile, decisions=decisions, policy_options=opts))
        Console().print(latency_table(res))
        if json_path is not None:
            json_path.write_text(json.dumps([asdict(r) for r in res], indent=1))


    @bench_app.command("replicas", epilog=policy_epilog())
    def replicas_cmd(
        policies: str = typer.Option(",".join(__import__("phaser.bench.replicas", fromlist=["POLICIES"]).POLICIES),
                                     "--policies", envvar="PHASER_BENCH_POLICIES", help=policy_help("Comma-separated policies")),
        replicas: str = typer.Option("1,2,4,8", "--replicas", help="Router replica counts, comma-separated (1 is the baseline)."),
        delays: str = typer.Option("0,0.02,0.05,0.2", "--delays",
                                   help="Seconds a replica sees the others' assignments late, comma-separated."),
        scenario: Optional[str] = typer.Option(None, "--scenario", help="Built-in scenario (default: the paper-16gb "
                                                                         "family: paper-mix on 4 x V100-16GB at 5 req/s)."),
        rate: Optional[float] = typer.Option(None, "--rate", min=0.001, help="Arrival rate, req/s (default: the scenario's)."),
        requests: Optional[int] = typer.Option(None, "--requests", min=10, help="Requests per run (default: the scenario's)."),
        repeat: int = typer.Option(3, "--repeat", min=1, help="Seeds (mean ± 95% CI, paired)."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write the rows as JSON."),
    ) -> None:
        """What router replicas cost: each replica decides its own share of the requests with its own view,
        seeing the others' assignments late; mean E2E change vs one router per policy, replica count and delay."""
        from rich.console import Console

        from phaser.bench import runner
        from phaser.bench.replicas import DEFAULT, run_replicas, table
        from phaser.bench.scenarios import get_scenario

        try:
            reps = sorted({int(x) for x in replicas.split(",") if x.strip()} | {1})
            dls = sorted({float(x) for x in delays.split(",") if x.strip()})
        except ValueError:
            raise PhaserError("--replicas takes integers and --delays seconds, comma-separated") from None
        if min(reps) < 1 or (dls and min(dls) < 0) or not dls:
            raise PhaserError("--replicas must be >= 1 and --delays >= 0 s")
        pols = runner.resolve_policies(policies)
        sc = (get_scenario(scenario) if scenario else DEFAULT).with_(n_requests=requests)
        console = Console(stderr=True)
        res = run_replicas(sc, pols, reps, dls, seeds=repeat, rate=rate, progress=lambda m: console.log(m))
        _print_whole(Console(), table(res))
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(res, indent=1))

    @bench_app.command("headroom", epilog=policy_epilog())
    def headroom(
        scenario: str = typer.Option("paper-v100", "--scenario", envvar="PHASER_BENCH_SCENARIO",
                                     help="Built-in scenario(s), comma-separated."),
        repeat: int = typer.Option(1, "--repeat", envvar="PHASER_BENCH_REPEAT", help="Seeds (mean ± 95% CI)."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="First seed; repeats use seed..seed+K-1."),
        requests: Optional[int] = typer.Option(None, "--requests", envvar="PHASER_BENCH_REQUESTS",
                                               help="Number of requests (overrides the scenario's)."),
        base: str = typer.Option("workload-aware", "--base",
                                 help="Heuristic the lookahead continues with (and improves on)."),
        horizon: float = typer.Option(10.0, "--horizon", help="Lookahead window in simulated seconds."),
        lookahead: bool = typer.Option(True, "--lookahead/--no-lookahead",
                                       help="Run the lookahead (slow: one simulator fork per "
                                            "instance per decision); without it only the isolated bound."),
        predicted: bool = typer.Option(False, "--predicted",
                                       help="Blindfold the lookahead to what a router could know: predicted "
                                            "output lengths, no future arrivals (default: clairvoyant)."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Write one JSON row per (scenario, seed)."),
    ) -> None:
        """How much could any router gain over round robin? Isolated bound and one-step lookahead."""
        from rich.console import Console
        from rich.progress import Progress

        from phaser.bench import runner
        from phaser.bench.headroom import aggregate_headroom, headroom_row
        from phaser.bench.report import headroom_table
        from phaser.bench.scenarios import get_scenario

        if repeat < 1:
            raise PhaserError(f"--repeat must be >= 1, got {repeat}")
        if not horizon > 0:
            raise PhaserError(f"--horizon must be > 0 s, got {horizon}")
        if base not in runner.heuristics():
            raise PhaserError(f"--base must be a heuristic: {', '.join(runner.heuristics())}")
        scs = [get_scenario(n.strip()).with_(n_requests=requests) for n in scenario.split(",") if n.strip()]
        if not scs:
            raise PhaserError("--scenario is empty")
        rows = []
        with Progress(console=Console(stderr=True), transient=True) as prog:
            for sc in scs:
                for sd in range(seed, seed + repeat):
                    task = prog.add_task(f"{sc.name} seed {sd}", total=None)
                    rows.append(headroom_row(sc, sd, base=base, horizon_s=horizon, with_lookahead=lookahead,
                                             on_progress=lambda k, task=task: prog.update(task, completed=k),
                                             clairvoyant=not predicted))
                    prog.remove_task(task)
        out = Console(width=max(160, Console().width))
        out.print(headroom_table(aggregate_headroom(rows)))
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(rows, indent=1))


def _capacity(scs, pols, seed, rates, options_for, slo_ttft, slo_tbt, json_path, out, console,
              horizon_s=None, heartbeat_delay=None, completion_delay=None) -> None:
    from rich.table import Table

    from phaser.bench import runner
    from phaser.bench.capacity import find_capacity, probe_requests

    t = Table(title=f"capacity at SLO (p99 TTFT <= {slo_ttft} s, p99 TBT <= {slo_tbt} s)", header_style="bold")
    if horizon_s is not None and not horizon_s > 0:
        raise PhaserError(f"--capacity-horizon must be > 0 s, got {horizon_s}")
    for c in ("scenario", "policy", "capacity req/s", "bracket", "probes", "horizon"):
        t.add_column(c)
    rows = []
    for sc in scs:
        # start at the given rate, else the scenario's, else the trace's own mean rate
        start = rates[0] or sc.rate or runner.mean_rate(runner.load_requests(sc, seed)) or 1.0
        # synthetic scenarios: a fixed horizon of arrivals per probe (see phaser.bench.capacity)
        horizon = horizon_s or (sc.n_requests / sc.rate if sc.rate and sc.n_requests else None)
        for pol in pols:
            def run(r, sc=sc, pol=pol, horizon=horizon):
                psc = sc.with_(n_requests=probe_requests(r, horizon)) if horizon else sc
                row, _ = runner.run_one(psc, pol, seed, rate=r, policy_options=options_for(pol),
                                        heartbeat_delay_s=heartbeat_delay, completion_delay_s=completion_delay)
                console.print(f"  {sc.name} {pol} @ {r:.2f} req/s: ttft_p99={row['ttft_p99']:.3f} "
                              f"tbt_p99={row['tbt_p99']:.4f}")
                return row

            res = find_capacity(run, start, slo_ttft_p99=slo_ttft, slo_tbt_p99=slo_tbt)
            rows.append({"scenario": sc.name, "policy": pol, "capacity_rps": res.capacity_rps,
                         "bracket": list(res.bracket), "probes": res.probes, "seed": seed,
                         "slo_ttft_p99": slo_ttft, "slo_tbt_p99": slo_tbt, "horizon_s": horizon,
                         "heartbeat_delay_s": heartbeat_delay, "completion_delay_s": completion_delay,
                         "config": sc.as_dict()})
            t.add_row(sc.name, pol, f"{res.capacity_rps:.2f}", f"{res.bracket[0]:.2f}–{res.bracket[1]:.2f}",
                      str(len(res.probes)), f"{horizon:.0f} s" if horizon else "whole trace")
    out.print(t)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=1))


def _register_vidur_compare(bench_app: typer.Typer) -> None:
    @bench_app.command("vidur-compare")
    def vidur_compare(
        profile: str = typer.Option("a100-llama2-7b", "--profile", "--profile-file", help="Profile to compare (name or file)."),
        scheduler: str = typer.Option("vllm-v0", "--scheduler", help="Engine scheduling mode: mixed, vllm-v0 (Vidur's), vllm-v1."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the rows as JSON."),
    ):
        """phaser vs Vidur on the same 4 x 4,000 requests (1 and 4 A100s, 50 % and 90 % load): mean, p50 and p99
        of E2E, TTFT and TBT, and the error of each."""
        from rich.console import Console
        from rich.table import Table

        from phaser.bench.vidur_compare import compare
        from phaser.engine.instance import SCHEDULERS

        if scheduler not in SCHEDULERS:
            raise PhaserError(f"unknown --scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
        rows = compare(profile, scheduler)
        t = Table(title=f"phaser ({profile}, {scheduler}) vs Vidur")
        for c in ("file", "replicas", "load", "E2E mean", "E2E p50", "TTFT p50", "TTFT mean", "TBT mean"):
            t.add_column(c)
        for r in rows:
            cell = lambda m: f"{r[m + '_phaser']:.3f} vs {r[m + '_vidur']:.3f} ({100 * r[m + '_error']:+.1f} %)"  # noqa: E731
            t.add_row(r["file"], str(r["replicas"]), r["load"], cell("e2e_mean"), cell("e2e_p50"), cell("ttft_p50"),
                      cell("ttft_mean"), cell("tbt_mean"))
        Console().print(t)
        if json_path is not None:
            json_path.write_text(json.dumps(rows, indent=1))


def _register_engine_fidelity(bench_app: typer.Typer) -> None:
    @bench_app.command("engine-fidelity")
    def engine_fidelity(
        profile: str = typer.Option(..., "--profile", "--profile-file", envvar="PHASER_BENCH_PROFILE",
                                    help="Calibrated profile of the engine (`phaser calibrate --out`)."),
        workload: str = typer.Option("uniform?prompt=32-768&output=16-128", "--workload", help="Workload to replay (not the calibration's)."),
        requests: int = typer.Option(80, "--requests", min=2, help="Requests."),
        rate: float = typer.Option(0.5, "--rate", min=0.001, help="Mean arrival rate, req/s (real time)."),
        seed: int = typer.Option(0, "--seed"),
        instances: int = typer.Option(2, "--instances", min=1, help="Local llama-servers."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result as JSON."),
    ):
        """Replay a workload through local llama.cpp servers (the whole stack) and through the
        simulator with the calibrated profile; print mean / p50 / per-request errors of E2E, TTFT, TBT."""
        import json

        from services.fidelity import run_engine_fidelity

        res = run_engine_fidelity(profile, workload, requests, rate, seed, instances)
        typer.echo(json.dumps(res, indent=1))
        if json_path is not None:
            json_path.write_text(json.dumps(res, indent=1))


def _register_leaderboard(bench_app: typer.Typer) -> None:
    @bench_app.command("leaderboard", epilog=policy_epilog())
    def leaderboard(
        families: Optional[str] = typer.Option(None, "--families", help="Comma-separated families (default: all): "
                                               "paper, paper-16gb, kv-starved, bursty-long-prompt, conversation, heterogeneous, prefix-heavy."),
        policies: Optional[str] = typer.Option(None, "--policies", help="Comma-separated policies (default: ours, the "
                                               "production routers' and rl-guided)."),
        quick: bool = typer.Option(False, "--quick", help="2 load points (80, 110 %), 2 seeds, 300 requests per synthetic "
                                   "point, no lookahead unless --lookahead: for CI."),
        lookahead: Optional[bool] = typer.Option(None, "--lookahead/--no-lookahead",
                                                 help="Run (or read from the cache) the clairvoyant lookahead per family "
                                                      "and load for the capture ratio (default: on, off with --quick)."),
        seeds: int = typer.Option(0, "--seeds", min=0, help="Seeds per point (0: 3, or 2 with --quick)."),
        requests: int = typer.Option(0, "--requests", min=0, help="Requests per synthetic point (0: 1000, 300 with --quick)."),
        slo_ttft_p99: float = typer.Option(2.0, "--slo-ttft-p99", help="SLO: p99 TTFT (s)."),
        slo_tbt_p99: float = typer.Option(0.2, "--slo-tbt-p99", help="SLO: p99 time between tokens (s)."),
        out: Path = typer.Option(Path("leaderboard"), "--out", help="Folder for leaderboard.md, leaderboard.json and a PNG per family."),
    ):
        """Every policy x every scenario family x load point (fractions of round robin's capacity at the SLO):
        mean/p99 E2E, TTFT/TBT p99, goodput, paired gain over round robin with its CI, rejected requests and
        the capture ratio of the clairvoyant lookahead's gain."""
        import sys
        import time

        from phaser.bench import leaderboard as lb
        from phaser.bench import runner

        fams = lb.get_families(families)
        pols = runner.resolve_policies(policies) if policies else list(lb.DEFAULT_POLICIES)
        t0 = time.monotonic()
        board = lb.run_board(fams, pols, loads=lb.QUICK_LOADS if quick else lb.LOADS, seeds=seeds or (2 if quick else 3),
                             n=requests or (300 if quick else 1000), slo_ttft=slo_ttft_p99, slo_tbt=slo_tbt_p99,
                             with_lookahead=(not quick) if lookahead is None else lookahead,
                             progress=lambda m: print(m, file=sys.stderr, flush=True))
        board["wall_s"] = round(time.monotonic() - t0, 1)
        out.mkdir(parents=True, exist_ok=True)
        md = lb.markdown(board)
        (out / "leaderboard.md").write_text(md)
        (out / "leaderboard.json").write_text(json.dumps(board, indent=1))
        pngs = lb.plots(board, out)
        typer.echo(md)
        typer.echo(f"wrote {out / 'leaderboard.md'}, {out / 'leaderboard.json'} and {len(pngs)} PNG(s) in {board['wall_s']:.0f} s",
                   err=True)
