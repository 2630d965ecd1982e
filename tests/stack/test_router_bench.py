"""``phaser bench router-throughput`` measures real router processes on a real broker: an
assignment for every request is read back, in both modes, alone and as a group. Figures
are not asserted (performance lives in the README's benchmarks); that the count is complete
and the clock ran is."""

from __future__ import annotations

import pytest

from services.router_bench import run


@pytest.mark.parametrize("backlog, replicas", [(False, 1), (True, 1), (False, 2)])
def test_every_request_is_routed_and_timed(bare_broker, backlog, replicas):
    row = run(bare_broker.bootstrap, requests=300, instances=4, policy="workload-aware", profile="v100-llama2-7b",
              replicas=replicas, feature_share=0.1, deadline_s=240.0, backlog=backlog)
    assert (row["requests"], row["replicas"], row["mode"]) == (300, replicas, "backlog" if backlog else "live")
    assert row["route_s"] > 0 and abs(300 / row["decisions_per_s"] - row["route_s"]) <= 0.0006  # route_s: 3 decimals
    assert row["publish_s"] > 0 and row["broker"] == bare_broker.bootstrap
