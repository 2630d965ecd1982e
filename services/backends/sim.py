"""The ``sim`` worker backend (default): simulated GPU instances, the same
``phaser.engine.instance.Instance`` the simulator runs."""

from __future__ import annotations


def build_engines(instances: list[int], profile, chunked_prefill: bool,
                  max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None) -> dict[int, object]:
    """``profile``: a profile name or a ``LatencyProfile``."""
    from phaser.engine.instance import Instance
    from phaser.engine.profiles import get_profile

    prof = get_profile(profile) if isinstance(profile, str) else profile
    return {i: Instance(i, prof, chunked_prefill=chunked_prefill, max_num_batched_tokens=max_num_batched_tokens,
                        max_num_seqs=max_num_seqs) for i in instances}
