"""Router replicas, the functional core (no Kafka): each replica applies the others' decisions
to its view, skips its own echo, never applies a decision read after its completion, follows
re-routes whatever order the fence notice and the new assignment arrive in, and hands back
exactly the requests it had not routed when a partition moves away."""

from __future__ import annotations

import protos
from services.router import build_core


def _req(i: int, t: float = 0.0) -> protos.Request:
    return protos.Request(id=f"r{i}", arrival_s=t, prompt_tokens=100 + i, output_tokens=50)


def _replica(rid: str, policy: str = "least-requests"):
    core = build_core(policy, 3, ["v100-llama2-7b"], seed=0, predictor="online")
    core.router_id = rid
    return core


def _done(a: protos.Assignment) -> protos.Completion:
    r = a.request
    return protos.Completion(request_id=r.id, instance=a.instance, task=r.task, arrival_s=r.arrival_s, admitted_s=1.0,
                             first_token_s=1.1, finish_s=2.0, ttft_s=1.1, tbt_mean_s=0.02, tbt_p99_s=0.03, tbt_max_s=0.03,
                             e2e_s=2.0, router_wait_s=0.0, queue_wait_s=0.0, preemptions=0, prompt_tokens=r.prompt_tokens,
                             output_tokens=50)


def test_peers_see_each_others_decisions_and_skip_their_own_echo():
    a, b = _replica("r0"), _replica("r1")
    for i in range(3):
        a.on_request(_req(i))
    mine = a.decide(0.5)
    assert [x.router for x in mine] == ["r0"] * 3 and sorted(x.instance for x in mine) == [0, 1, 2]
    for x in mine:
        assert not a.on_peer_assignment(x, 0.6)  # the echo: applied when decided
        assert b.on_peer_assignment(x, 0.6)
    assert a.view.outstanding == b.view.outstanding == 3 and b.peer_assignments == 3
    assert abs(b.peer_lag_max_s - 0.1) < 1e-9  # decided at 0.5, read at 0.6
    # least-requests on b now sees every instance busy once; a request of its own goes where a's did not pile up
    b.on_request(_req(9))
    (x,) = b.decide(0.7)
    assert b.view.instances[x.instance].outstanding == 2
    # a peer's decisions are remembered as routed: if its partition moves here, nothing is routed twice
    assert not b.on_request(_req(0)) and b.duplicates == 1


def test_a_peer_decision_read_after_its_completion_is_not_applied():
    a, b = _replica("r0"), _replica("r1")
    a.on_request(_req(0))
    (x,) = a.decide(0.5)
    b.on_completion(_done(x), 1.0)  # completions and assignments are different topics: no order between them
    b.on_peer_assignment(x, 1.1)
    assert b.view.outstanding == 0 and b.peer_late == 1


def test_a_peers_re_route_is_followed_in_either_order():
    b = _replica("r1")
    first = protos.Assignment(request=_req(0), instance=2, policy="p", policy_version=0, decided_s=1.0,
                              router_wait_s=0.0, predicted_tokens=50, predicted_bucket=0, action=-1, router="r0")
    fence = first.model_copy(update={"revoked": True, "epoch": 1, "policy": "failover"})
    again = first.model_copy(update={"instance": 0, "epoch": 1, "decided_s": 7.0})
    for order in ((fence, again), (again, fence)):
        b = _replica("r1")
        b.on_peer_assignment(first, 1.0)
        for m in order:
            b.on_peer_assignment(m, 7.5)
        assert b.view.instance_of("r0") == 0 and b.view.outstanding == 1, order
        assert [v.outstanding for v in b.view.instances] == [1, 0, 0]


def test_a_partition_moving_away_hands_back_exactly_what_was_not_routed():
    core = _replica("r0")
    for i, (part, off) in enumerate([(0, 10), (1, 20), (0, 11), (1, 21), (1, 22)]):
        core.on_request(_req(i), off, part)
    # the two oldest (p0@10, p1@20) are routed; p0@11, p1@21, p1@22 wait (one decision per call here)
    routed = []
    for _ in range(2):
        req, job, off, ep, att, part = core.queue.popleft()
        routed.append(req.id)
    assert core.requests_commit(12, 0) == 11 and core.requests_commit(23, 1) == 21
    back = core.drop_partitions({1}, {1: 23})
    assert back == {1: 21}  # the new owner re-reads p1 from the oldest request not routed here
    assert [q[0].id for q in core.queue] == ["r2"] and core.dropped == 2
    assert core.on_request(_req(3), 21, 1)  # forgotten as seen: if p1 comes back, it is routed
    assert core.drop_partitions({0}, {0: 12}) == {0: 11}
    assert core.drop_partitions({5}, {}) == {}
