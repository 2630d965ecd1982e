"""Thin Kafka shells around phaser's core: the embedded broker launcher, shared
Kafka plumbing, router, GPU worker, monitor and the ``phaser up`` orchestrator."""
