"""phaser's workload library and load generator.

``load_workload(spec, n=, rate=, duration_s=, seed=)`` is the one function the
rest of the project calls; see ``registry.py`` for names and spec options,
``readers/`` for trace formats, ``synthetic/`` for generators, ``stats.py``
for workload statistics and ``publisher.py`` for ``phaser load``.
"""

from load_generator.registry import NAMES, load_workload, resolve
from load_generator.synthetic.paper_mix import HEAVY_DECODE_TOKENS
from load_generator.trace import Trace

__all__ = ["load_workload", "resolve", "NAMES", "HEAVY_DECODE_TOKENS", "Trace"]
