"""Built-in benchmark scenarios (issue 5) and ad-hoc ones from flags.

| name | cluster | workload | rate | requests |
|---|---|---|---|---|
| paper-v100 | 4 x v100-llama2-7b, vLLM V0 | paper-mix | 20 req/s | 2,000 |
| paper-a100 | 4 x a100-llama3-8b, vLLM V0 | paper-mix | 80 req/s | 2,000 |
| paper-a100-chunked | same, vLLM V1 (chunked prefill, 1,024 max batched tokens) | | | |
| paper-8x | 8 x v100-llama2-7b, vLLM V0 | paper-mix | 40 req/s | 4,000 |
| paper-v100-16gb | 4 x v100-16gb-llama2-7b, vLLM V0 | paper-mix | 5 req/s | 2,000 |
| paper-a10g | 4 x a10g-llama2-7b, vLLM V0 | paper-mix | 5 req/s | 2,000 |
| prefix-heavy | 16 x a100-llama31-8b, vLLM V1 (chunked, 8,192) | Mooncake trace | trace timing | its windows |
| azure-conv | 8 x a100-llama3-8b | Azure conversation trace hour | trace timing | 19,366 |
| azure-code | 8 x a100-llama3-8b | Azure coding trace hour | trace timing | 8,819 |

Rates and sizes are the paper's (Jain et al., arXiv 2408.13510) and the Azure
trace's own (Patel et al., ISCA 2024). ``rate=None`` keeps the trace's timing;
a rate given for a trace retimes it to that mean rate (capacity search does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from phaser.errors import PhaserError


@dataclass(frozen=True)
class Scenario:
    name: str
    workload: str
    instances: int
    profile: str
    rate: float | None
    n_requests: int | None
    chunked_prefill: bool = False
    max_num_batched_tokens: int | None = None
    #: the engines' scheduling mode (``phaser.engine.instance.SCHEDULERS``)
    scheduler: str = "mixed"
    #: a heterogeneous cluster: one profile name per instance (``profile`` is then the first,
    #: ``instances`` their count)
    profiles: tuple[str, ...] | None = None
    #: what the router is told per instance, when it differs from what runs (``SimConfig.told``)
    told: tuple[str, ...] | None = None

    def profile_names(self) -> tuple[str, ...]:
        if self.profiles:
            if len(self.profiles) != self.instances:
                raise PhaserError(f"scenario {self.name}: {len(self.profiles)} profiles for {self.instances} instances")
            return tuple(self.profiles)
        return tuple([self.profile] * self.instances)

    def with_(self, **kw) -> "Scenario":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def as_dict(self) -> dict:
        return asdict(self)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    # the paper's setups: vLLM V0 without chunked prefill (prefill-only iterations pause every
    # decode), and with it (vLLM V1's scheduler: decodes first, then prefill chunks)
    Scenario("paper-v100", "paper-mix", 4, "v100-llama2-7b", 20.0, 2000, scheduler="vllm-v0"),
    Scenario("paper-a100", "paper-mix", 4, "a100-llama3-8b", 80.0, 2000, scheduler="vllm-v0"),
    Scenario("paper-a100-chunked", "paper-mix", 4, "a100-llama3-8b", 80.0, 2000,
             chunked_prefill=True, max_num_batched_tokens=1024, scheduler="vllm-v1"),
    Scenario("paper-8x", "paper-mix", 8, "v100-llama2-7b", 40.0, 4000, scheduler="vllm-v0"),
    Scenario("azure-conv", "azure-conv", 8, "a100-llama3-8b", None, None),
    Scenario("azure-code", "azure-code", 8, "a100-llama3-8b", None, None),
    # KV-scarce: the paper's workload on the 16 GB V100 (3.8k KV tokens per instance), near the knee (5 req/s;
    # at the paper's 20 req/s it is 4x past capacity and no router changes anything)
    Scenario("paper-v100-16gb", "paper-mix", 4, "v100-16gb-llama2-7b", 5.0, 2000, scheduler="vllm-v0"),
    # KV-scarce 24 GB parts: the paper's workload on 4 x A10G (12.4k Llama-2-7B KV tokens each)
    Scenario("paper-a10g", "paper-mix", 4, "a10g-llama2-7b", 5.0, 2000, scheduler="vllm-v0"),
    # prompt-heavy, prefix-sharing traffic on a long-context model (prefix caching on, as always;
    # the profile chunks prefills under 8,192 tokens, as vLLM does above 32k of context)
    Scenario("prefix-heavy", "mooncake", 16, "a100-llama31-8b", None, None, scheduler="vllm-v1"),
]}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise PhaserError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def custom_scenario(workload: str, instances: int, profile: str, rate: float | None, n_requests: int | None,
                    chunked_prefill: bool = False, max_num_batched_tokens: int | None = None) -> Scenario:
    if instances < 1:
        raise PhaserError(f"--instances must be >= 1, got {instances}")
    return Scenario(f"custom:{workload}", workload, instances, profile, rate, n_requests,
                    chunked_prefill, max_num_batched_tokens)
