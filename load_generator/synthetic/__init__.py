"""Synthetic workload parts: arrival processes, length distributions, the paper's task mix."""
