"""No policy reads the true output length -- behaviourally, through the simulator.

The same burst of requests is simulated twice with different oracle output
lengths. Every request arrives before any can complete (arrivals span 1 ms,
a prefill takes longer), so the view a policy sees holds only router-side
knowledge, identical in both runs: any difference in the chosen instances
could only come from reading the oracle.
"""

import pytest

from phaser.bench.runner import heuristics
from phaser.policies import make_policy
from protos.messages import Request


class FixedPredictor:
    def predict(self, request):
        return 100.0, 0


def burst(out_len):
    return [Request(id=f"r{i}", arrival_s=i * 1e-5, prompt_tokens=50 + 37 * (i % 9), task="t",
                    prefix_ids=[i % 3, 10 + i % 5], output_tokens=out_len(i)) for i in range(64)]


@pytest.mark.parametrize("name", heuristics())
def test_same_jobs_different_oracle_same_decisions(name):
    from phaser.sim import SimConfig, simulate

    cfg = SimConfig(profiles=["a100-llama3-8b"] * 4)
    runs = []
    for out_len in (lambda i: 5 + i, lambda i: 3000 - 40 * i):
        res = simulate(burst(out_len), make_policy(name, 4, seed=3), cfg, FixedPredictor(), 3)
        runs.append({r.id: r.instance for r in res.records})
    assert runs[0] == runs[1]
    assert len(runs[0]) == 64
