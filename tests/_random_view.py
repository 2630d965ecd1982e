"""Drive a ``ClusterView`` through random assignments, completions, heartbeats and clock
moves, for tests that check a vectorised reading of the view against its properties."""

from __future__ import annotations

from protos.messages import InstanceStatus


def drive(view, profiles, rng, steps: int, new_job):
    """Apply ``steps`` random events to ``view`` (``new_job(k, t, rng)`` makes the k-th
    assigned job); yields ``(k, t)`` after each, with the view's clock at ``t``."""
    live: list[tuple[str, int]] = []
    t = 0.0
    for k in range(steps):
        t += rng.expovariate(40.0)
        view.advance_to(t)
        r = rng.random()
        if r < 0.55:
            j = new_job(k, t, rng)
            i = rng.randrange(len(profiles))
            view.on_assign(j, i, t)
            live.append((j.id, i))
        elif r < 0.85 and live:
            rid, i = live.pop(rng.randrange(len(live)))
            view.on_complete(rid, i, t)
        else:
            i = rng.randrange(len(profiles))
            tot = profiles[i].kv_blocks_total
            view.on_status(InstanceStatus(instance=i, ts_s=t, profile=profiles[i].name, running_prefill=0,
                                          running_decode=0, waiting=0, kv_blocks_used=rng.randrange(tot + 1),
                                          kv_blocks_total=tot, tokens_in_flight=0), t)
        yield k, t
