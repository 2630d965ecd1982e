"""The shipped rl-guided policy runs in the live stack (router + worker on a
real broker) and every request completes exactly once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from load_generator.registry import load_workload
from phaser.policies.rl import default_checkpoint

_spec = importlib.util.spec_from_file_location("_stack_conftest", Path(__file__).parents[1] / "stack" / "conftest.py")
_stack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_stack)


async def test_rl_policy_in_live_stack_completes_every_request(bare_broker):
    assert default_checkpoint("rl-guided").exists()  # shipped with the package: its absence is a failure
    reqs = load_workload("paper-mix", n=200, seed=7)
    run = await _stack.run_inprocess_stack(bare_broker.bootstrap, reqs, instances=4, profile="v100-llama2-7b",
                                           time_scale=100.0, policy="rl-guided")
    assert sorted(run.completions) == sorted(r.id for r in reqs)
    assert run.duplicates == 0
    assert all(c.policy == "rl-guided" and 0 <= c.instance < 4 for c in run.completions.values())
    assert run.router.routed == 200
    assert run.router.policy.last_features is not None and len(run.router.policy.last_features) == run.router.policy.encoder.spec.size
