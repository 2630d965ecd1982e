"""phaser train: train an RL router (Double DQN, optionally HuRL-guided) in the simulator."""

from __future__ import annotations

import typer

from phaser.errors import PhaserError


def parse_sets(items: list[str]) -> dict:
    """``["gamma=0.95", "hidden=128,128"]`` → typed overrides for ``DQNConfig``."""
    import dataclasses

    from phaser.rl.config import DQNConfig

    types = {f.name: f.type for f in dataclasses.fields(DQNConfig)}
    defaults = DQNConfig()
    out: dict = {}
    for item in items:
        key, sep, val = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise PhaserError(f"bad --set {item!r}: use KEY=VALUE with KEY one of {', '.join(sorted(types))}")
        cur = getattr(defaults, key)
        try:
            if isinstance(cur, tuple):
                out[key] = tuple(int(v) for v in val.split(",") if v.strip())
            elif isinstance(cur, bool):
                out[key] = val.lower() in ("1", "true", "yes")
            elif isinstance(cur, int):
                out[key] = int(val)
            elif isinstance(cur, float):
                out[key] = float(val)
            else:
                out[key] = val
        except ValueError:
            raise PhaserError(f"bad --set {item!r}: {val!r} is not a valid {type(cur).__name__}") from None
    return out


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        scenario: str = typer.Option("paper-v100", "--scenario", envvar="PHASER_SCENARIO",
                                     help="Benchmark scenario to train on (see phaser bench)."),
        variant: str = typer.Option("rl-guided", "--variant", envvar="PHASER_VARIANT",
                                    help="rl-baseline (no mixing term), rl-aware (mixing penalty in the reward) "
                                         "or rl-guided (HuRL heuristic guidance)."),
        episodes: int = typer.Option(30, "--episodes", min=1, envvar="PHASER_EPISODES", help="Training episodes (one workload draw each)."),
        out: str = typer.Option(..., "--out", envvar="PHASER_CHECKPOINT_DIR",
                                help="Checkpoint root: a new version dir v00000N/ plus curves.csv/png are written."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="Seed of the run (episode workloads, init, exploration)."),
        arch: str = typer.Option("mlp", "--arch",
                                 help="mlp (paper's fixed-size net, tied to the instance count) or shared "
                                      "(per-instance scoring net, any instance count)."),
        rate: float = typer.Option(None, "--rate", min=0.001, envvar="PHASER_TRAIN_RATE",
                                   help="Request rate in req/s (default: the scenario's), e.g. to train "
                                        "where routing matters more."),
        requests: int = typer.Option(None, "--requests", "-n", min=10,
                                     help="Requests per episode (default: the scenario's)."),
        window_s: float = typer.Option(None, "--window-s", min=1.0, envvar="PHASER_TRAIN_WINDOW_S",
                                       help="For a replayed trace (azure-conv, azure-code): episodes are windows "
                                            "of this many seconds, dealt into training / selection / test sets "
                                            "(phaser.rl.windows; default 180). Ignored with --requests."),
        eval_every: int = typer.Option(5, "--eval-every", min=1, help="Evaluate every K episodes."),
        eval_seeds: int = typer.Option(3, "--eval-seeds", min=1, help="Held-out workload seeds per evaluation."),
        baselines: str = typer.Option(None, "--baselines",
                                      help="Comma-separated heuristics to compare with (default: all)."),
        sets: list[str] = typer.Option([], "--set", help="Override a hyperparameter, e.g. --set gamma=0.95 "
                                                         "--set hidden=128,128 (repeatable)."),
    ) -> None:
        """Train a routing policy in the simulator and write a versioned checkpoint + learning curves."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from phaser.bench.scenarios import get_scenario
        from phaser.rl.config import DQN_VARIANTS, DQNConfig

        if variant not in DQN_VARIANTS:
            raise PhaserError(f"unknown variant {variant!r}; known: {', '.join(DQN_VARIANTS)} "
                              "(rl-families: `phaser train families`)")
        sc = get_scenario(scenario)
        if rate is not None:
            import dataclasses

            sc = dataclasses.replace(sc, rate=float(rate))
        windows = None
        if sc.n_requests is None and requests is None:
            # a replayed trace has one draw: episodes are its disjoint windows (phaser.rl.windows)
            from phaser.rl.windows import WINDOW_S, TraceWindows

            windows = TraceWindows(sc.workload, window_s or WINDOW_S, sc.rate)  # evaluates on every selection window
        try:
            cfg = DQNConfig(**dict(parse_sets(sets), variant=variant, arch=arch))
        except ValueError as e:
            raise PhaserError(str(e)) from None
        names = [b.strip() for b in baselines.split(",") if b.strip()] if baselines else None
        if names is not None and "round-robin" not in names:
            names = ["round-robin"] + names

        from phaser.rl.training import train_scenario

        console = Console(stderr=True)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"{variant} on {scenario}", total=episodes, status="baselines…")

            def progress(row: dict) -> None:
                ev = row["eval_e2e_mean"]
                st = f"ε={row['epsilon']:.2f} λ={row['lam']:.2f} train E2E {row['train_e2e_mean']:.3f}s"
                if ev is not None:
                    st += f" | eval {ev:.3f}s vs rr {row['eval_round_robin']:.3f}s"
                bar.update(task, advance=1, status=st)

            rep = train_scenario(sc, cfg, episodes, seed, out, eval_every=eval_every, eval_seeds=eval_seeds,
                                 n_requests=requests, baselines=names, windows=windows,
                                 on_progress=progress)
        rr = rep.baselines.get("round-robin")
        bh = rep.baselines.get(rep.best_heuristic)
        console.print(f"checkpoint: {rep.checkpoint}")
        console.print(f"best eval mean E2E {rep.best_eval_e2e:.4f}s (episode {rep.best_episode}); "
                      f"round-robin {rr:.4f}s ({100 * (rr - rep.best_eval_e2e) / rr:+.2f}%), "
                      f"{rep.best_heuristic} {bh:.4f}s ({100 * (bh - rep.best_eval_e2e) / bh:+.2f}%) "
                      f"on held-out seeds; {rep.wall_s:.0f}s wall")
        test = rep.extras.get("test_e2e_per_window")
        if test:
            from phaser.rl.windows import paired_gain

            mine = test[variant]
            console.print(f"test windows ({len(mine)}, never used for selection): {variant} mean E2E "
                          f"{sum(mine) / len(mine):.4f}s")
            for name, ref in sorted(test.items()):
                if name != variant:
                    g, hw = paired_gain(mine, ref)
                    console.print(f"  vs {name}: {sum(ref) / len(ref):.4f}s, paired gain {g:+.2f}% ± {hw:.2f}% (95% CI)")

    @app.command("train-families")
    def train_families_cmd(
        out: str = typer.Option(..., "--out", envvar="PHASER_CHECKPOINT_DIR",
                                help="Checkpoint root: a new version dir v00000N/ is written."),
        families: str = typer.Option(None, "--families", envvar="PHASER_FAMILIES",
                                     help="Comma-separated leaderboard families (default: all)."),
        rounds: int = typer.Option(3, "--rounds", min=1, help="DAgger rounds (round 0 follows the base heuristic)."),
        episodes: int = typer.Option(4, "--episodes", min=1, help="Episodes per family per round."),
        labels: int = typer.Option(80, "--labels", min=1, help="Teacher labels per episode (a sample of its states)."),
        requests: int = typer.Option(400, "--requests", "-n", min=10, help="Requests per synthetic draw."),
        updates: int = typer.Option(3000, "--updates", min=1, help="Gradient steps per round."),
        seed: int = typer.Option(0, "--seed", envvar="PHASER_SEED", help="Seed of the run."),
    ) -> None:
        """Train one router for every scenario family: DAgger on the blindfolded lookahead (phaser.rl.families)."""
        import sys

        from phaser.rl.families import FamiliesConfig, train_families

        kw = {"families": tuple(f.strip() for f in families.split(",") if f.strip())} if families else {}
        try:
            cfg = FamiliesConfig(rounds=rounds, episodes_per_family=episodes, labels_per_episode=labels,
                                 n_requests=requests, updates_per_round=updates, **kw)
        except ValueError as e:
            raise PhaserError(str(e)) from None
        rep = train_families(cfg, seed, out, progress=lambda s: print(s, file=sys.stderr, flush=True))
        print(f"checkpoint: {rep.checkpoint} (round {rep.best_round}, {rep.wall_s:.0f}s wall)")
        for r in rep.selection:
            print(f"  {r['family']:<20} load {r['load']:>4g}: {r['gain_pct']:+6.2f}% over round robin "
                  f"({r['best_heuristic']} {r['best_heuristic_gain_pct']:+.2f}%) on selection draws")
