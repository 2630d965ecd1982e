"""The GPU instance engine: latency profiles, KV block manager + prefix cache,
and the iteration-level batching instance (pure: no clock, no I/O)."""
