"""The pure parts of the worker backends (see ``services.backends``): stream
timing, the circuit breaker, the engine-telemetry mapping, prompt synthesis."""
