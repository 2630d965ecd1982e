"""phaser: a phase-aware load balancer for LLM inference.

The functional core lives here (no I/O, injectable clocks): the instance
engine and latency profiles (``engine``), the router's cluster view
(``cluster``), routing policies (``policies``), the output-length predictor
(``predictor``), the virtual-time cluster simulator (``sim``), the benchmark
(``bench``) and the learning router (``rl``). Kafka services (``services``),
workloads (``load_generator``) and the online trainer (``policy_trainer``) are
thin shells around it.
"""

__version__ = "0.1.0"
