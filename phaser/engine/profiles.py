"""Latency profiles: what one GPU serving one model costs per iteration.

One forward pass (an *iteration* of continuous batching) over ``n_tokens`` tokens
(1 per decoding request + every prefill chunk's tokens) takes::

    iteration_time = max(floor_s, a_s + b_s * n_tokens)      # token-wise ops
                     + c_s * prefill_attn_work                 # prefill attention
                     + d_s * decode_kv_tokens                  # decode attention

* ``max(floor_s, a_s + b_s·n)`` — the token-wise ("linear") operators: QKV/out
  projections, MLP, norms, RoPE. Below the knee an iteration is bound by
  streaming the weights (the floor); above it by matmul FLOPs (linear in
  tokens). ``floor_s, a_s, b_s`` are FITTED to measured operator profiles
  (``calibration/linear_ops_tp1.csv``, see ``calibration/SOURCES.md``) by
  minimising MAPE; ``tests/engine/test_profiles.py`` checks MAPE ≤ 10 %.
* ``c_s`` — prefill (causal) attention is compute bound:
  FLOPs ≈ 4 · layers · d_model · Σ chunk_len · (context_before + chunk_len/2)
  (QKᵀ and AV, 2 FLOPs per multiply-add each), i.e. ≈ 2·layers·d_model·tokens²
  for a whole prompt (``/work/shared/data/SOURCES.md``). So
  ``c_s = 4·layers·d_model / (peak_flops · ATTN_FLOP_EFFICIENCY)``.
* ``d_s`` — a decode step reads every decoding request's KV cache once:
  ``d_s = kv_bytes_per_token / (mem_bandwidth · KV_READ_EFFICIENCY)``.

Roofline facts (SOURCES.md): A100-80GB 312 TFLOP/s BF16 dense, 2.039 TB/s;
H100-SXM 989 TFLOP/s, 3.35 TB/s; V100 125 TFLOP/s FP16 tensor, 0.9 TB/s.
KV bytes per token (BF16/FP16, all layers): Llama-2-7B 2·32·4096·2 = 512 KiB;
Llama-3-8B (GQA, 8 KV heads of 128) 2·32·1024·2 = 128 KiB.

V100 + Llama-2-7B has no operator table: it follows the paper's own profiling
(Jain et al., arXiv 2408.13510; ``/work/shared/docs/paper-notes.md``): prefill ≈
3.2e-4 s per prompt token, a decode iteration ≈ 34–37 ms over 2–6 k KV tokens.
Hence ``d_s = 3 ms / 4,000 tokens = 7.5e-7 s`` (the roofline gives 5.8e-7 at full
bandwidth, i.e. the paper's numbers imply ≈ 78 % of the 0.9 TB/s), ``floor_s =
34 ms − 2,000·d_s = 32.5 ms`` (the measured small-batch decode iteration, far above
the 15 ms weight-streaming roofline: vLLM on V100 has no FlashAttention and
large per-step overheads), ``a_s = 0`` and ``b_s = 3.2e-4`` s/token (the paper's
linear prefill profile; prompts there are ≤ 1,000 tokens, where the quadratic
term adds < 2 %).

Memory, as vLLM sizes its KV cache (``LatencyProfile.memory``)::

    kv_bytes = gpu_mem · gpu_mem_util − weights − non_torch − activation − cuda_graphs

* ``gpu_mem`` is the memory the driver reports, not the part's nominal size:
  79.19 GiB on the 80 GB A100/H100 ("total_gpu_memory (79.19GiB)" in vLLM's
  start-up logs, e.g. kubernetes-sigs/gateway-api-inference-extension#550), so
  the HBM parts get nominal × 79.19/80; the 24 GB GDDR6 parts (A10G, L4; ECC on)
  report 22.06 GiB (a vLLM start-up log of a 24 GB card: "Free memory on device
  (21.83/22.06 GiB)").
* ``non_torch`` (CUDA context share, cuBLAS workspace): 0.2 GiB (vLLM logs at
  TP 1: 0.16–0.20 GiB; one outlier at 1.79 GiB in vllm-project/vllm#10511).
* ``activation``: vLLM's profiled peak of one forward pass over
  ``max_num_batched_tokens`` tokens, modelled as ``k · T · (3·ffn + 4·d_model) ·
  2 bytes`` (the gate/up projections, their product and the residual stream)
  with ``k`` fitted to the one measurement we have: Llama-3-8B at T = 8,192 peaks
  at 1.26 GiB (vllm-project/vllm#10511). Llama-2-7B at 4,096 tokens: 0.52 GiB.
* ``cuda_graphs``: 0.5 GiB for a 7–8B model (vLLM logs: "Graph capturing
  finished …, took 0.53 GiB" for Llama-3.1-8B; 0.47–0.68 GiB for other models of
  that size); 0 on a profile that runs eager (``--enforce-eager``).

What that leaves (``phaser bench leaderboard`` prints it per family):
A100-80GB + Llama-3-8B 54.3 GiB = 445 k tokens (vLLM's log above: 53.29 GiB
before graphs); V100-32GB + Llama-2-7B 30 k tokens; A10G/L4 + Llama-2-7B 12.4 k,
+ Llama-3-8B 24 k; V100-16GB + Llama-2-7B only with ``gpu_mem_util`` 0.95 and
eager mode (the usual recipe for a 7B FP16 model on a 16 GB card; at 0.9 with
graphs 0.4 GiB would be left): 3.6 k tokens, less than one 4,096-token context,
so long requests there are rejected. The V100 is the **32 GB** SXM2 part in the
paper's own setup (Azure NDv2 class machines).

A10G and L4 have no operator table: their coefficients are the A100's measured
ones carried by roofline ratios (``_scaled_linear``): the weight-streaming floor
by HBM/GDDR bandwidth (A100 2.039 TB/s; A10G 0.6; L4 0.3), the per-token matmul
slope and intercept by dense FP16 tensor FLOP/s (A100 312 T; A10G 70 T, after
Baseten's A10 vs A10G comparison, AWS publishes no figure; L4 121 T, NVIDIA's
datasheet 242 T with sparsity), attention as for the H100 (``_vidur_attention``).
These are estimates, not measurements: calibrate a real part with ``phaser calibrate``.

Scheduler limits (vLLM defaults): ``max_num_seqs`` = 256; ``max_num_batched_tokens``
= the model's context length (vLLM V0 uses max(max_model_len, 2048) when chunked
prefill is off): 4,096 for Llama-2, 8,192 for Llama-3-8B.
"""

from __future__ import annotations

from dataclasses import dataclass

from phaser.errors import PhaserError

GiB = 1 << 30

#: Fraction of peak tensor FLOP/s that prefill attention kernels achieve.
#: FlashAttention-2 reports 50–73 % of peak forward on A100 (Dao, 2023); we
#: take the low end since chunks are short and causal.
ATTN_FLOP_EFFICIENCY = 0.5
#: Fraction of peak HBM bandwidth that paged decode attention achieves when
#: reading KV blocks (PagedAttention/FlashDecoding kernels reach ~60–80 %;
#: scattered 16-token blocks keep it at the low end).
KV_READ_EFFICIENCY = 0.6

# Hardware roofline facts (/work/shared/data/SOURCES.md).
_PEAK_FLOPS = {"a100": 312e12, "h100": 989e12, "v100": 125e12, "a10g": 70e12, "l4": 121e12}
_MEM_BW = {"a100": 2.039e12, "h100": 3.35e12, "v100": 0.9e12, "a10g": 0.6e12, "l4": 0.3e12}
#: nominal memory (GB) of each part's default variant
_GPU_GB = {"a100": 80, "h100": 80, "v100": 32, "a10g": 24, "l4": 24}
#: GDDR6 parts with ECC on: the memory the driver reports (a vLLM log of a 24 GB card)
_GDDR_REPORTED = {24: 22.06 * GiB}
#: HBM parts: reported / nominal (79.19 GiB of 80 on the A100/H100)
_HBM_REPORTED = 79.19 / 80


def _reported_mem(gpu: str, gb: int) -> int:
    """What the driver (and so vLLM) sees of a ``gb`` GB part (see the module docstring)."""
    if gpu in ("a10g", "l4"):
        return int(_GDDR_REPORTED[gb])
    return int(gb * GiB * _HBM_REPORTED)


#: vLLM's non-torch reservation at TP 1 and its CUDA-graph memory for a 7-8B model
NON_TORCH_BYTES = int(0.2 * GiB)
CUDA_GRAPH_BYTES = int(0.5 * GiB)

# Model facts: (layers, d_model, params, kv_bytes_per_token, max_model_len).
# Params from the model cards: Llama-2-7B 6.74 B, Llama-3-8B 8.03 B; FP16/BF16 weights.
# (The MLP width is in ``_FFN``.)
_MODELS = {
    "llama2-7b": (32, 4096, 6.74e9, 2 * 32 * 4096 * 2, 4096),
    "llama3-8b": (32, 4096, 8.03e9, 2 * 32 * 8 * 128 * 2, 8192),
    # Llama-3.1-8B: Llama-3-8B's architecture with a 128k context (RoPE scaling)
    "llama31-8b": (32, 4096, 8.03e9, 2 * 32 * 8 * 128 * 2, 131072),
}
#: MLP (intermediate) width, from the model configs
_FFN = {"llama2-7b": 11008, "llama3-8b": 14336, "llama31-8b": 14336}
#: the activation model's factor: Llama-3-8B over 8,192 tokens peaks at 1.26 GiB (vllm#10511)
_ACT_K = 1.26 * GiB / (8192 * (3 * 14336 + 4 * 4096) * 2)


def activation_bytes(model: str, tokens: int) -> int:
    """vLLM's profiled activation peak of one ``tokens``-token forward pass of ``model``."""
    return int(_ACT_K * tokens * (3 * _FFN[model] + 4 * _MODELS[model][1]) * 2)

# Fitted token-wise coefficients (ms): floor, a, b per token. Fit = minimum-MAPE
# max(floor, a + b·n) over every row of calibration/linear_ops_tp1.csv for the
# profile (MAPE of the fit in the comment; see calibration/SOURCES.md).
_LINEAR_MS = {
    "a100-llama2-7b": (9.536, 3.921, 0.06310),  # Vidur A100 TP1, n = 1..4096, MAPE 3.8 %
    "h100-llama2-7b": (5.792, 4.119, 0.01948),  # Vidur H100 TP1, n = 1..4096, MAPE 4.4 %
    "a100-llama3-8b": (10.464, 5.838, 0.06632),  # Vidur A100 TP1, n = 1..32768, MAPE 2.6 %
    "h100-llama3-8b": (9.170, 4.796, 0.02366),  # LLMServingSim H100 TP1 Llama-3.1-8B, n = 1..2048, MAPE 2.9 %
}
# Llama-3.1-8B has Llama-3-8B's operators: the same token-wise coefficients
_LINEAR_MS["a100-llama31-8b"] = _LINEAR_MS["a100-llama3-8b"]
_LINEAR_MS["h100-llama31-8b"] = _LINEAR_MS["h100-llama3-8b"]


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    """One GPU type serving one model (TP=1). Times in seconds."""

    name: str
    gpu: str
    model: str
    gpu_mem_bytes: int
    weight_bytes: int
    kv_bytes_per_token: int
    floor_s: float
    a_s: float
    b_s: float
    c_s: float
    d_s: float
    max_num_batched_tokens: int
    #: decode attention's cost per decoding request per iteration (Vidur-measured profiles)
    e_s: float = 0.0
    #: prefill attention's fixed cost per prefill chunk per iteration (Vidur-measured profiles)
    g_s: float = 0.0
    gpu_mem_util: float = 0.9
    #: what vLLM reserves before the KV cache (see the module docstring): its non-torch
    #: memory, the profiled activation peak, the CUDA graphs (0 = none: older profile files)
    non_torch_bytes: int = 0
    activation_bytes: int = 0
    cuda_graph_bytes: int = 0
    block_tokens: int = 16
    max_num_seqs: int = 256
    source: str = ""
    #: the model's context length: a request's prompt + output must fit in it
    max_model_len: int = 4096
    #: KV blocks when known directly (a calibrated engine: llama.cpp's slots x context);
    #: 0 = derived from the memory facts above
    kv_blocks: int = 0
    #: the engine always chunks prefills under ``max_num_batched_tokens`` (llama.cpp
    #: server, vLLM V1), whatever ``--chunked-prefill`` says
    chunked_prefill: bool = False

    def iteration_time(self, n_tokens: int, prefill_attn_work: float, decode_kv_tokens: float,
                       n_decode: int = 0, n_chunks: int = 0) -> float:
        """Duration of one iteration: see the module docstring. ``n_decode``: decoding
        requests in it (``e_s`` each), ``n_chunks``: prefill chunks in it (``g_s`` each)."""
        lin = self.a_s + self.b_s * n_tokens
        if lin < self.floor_s:
            lin = self.floor_s
        return (lin + self.c_s * prefill_attn_work + self.d_s * decode_kv_tokens + self.e_s * n_decode
                + self.g_s * n_chunks)

    def prefill_time(self, prompt_tokens: int) -> float:
        """One request's whole prompt prefilled alone in one iteration."""
        return self.iteration_time(prompt_tokens, prompt_tokens * prompt_tokens / 2.0, 0, 0, 1)

    def decode_step_time(self, batch: int, kv_tokens: float) -> float:
        """One decode-only iteration of ``batch`` requests reading ``kv_tokens`` KV tokens."""
        return self.iteration_time(batch, 0.0, kv_tokens, batch, 0)

    @property
    def kv_blocks_total(self) -> int:
        if self.kv_blocks > 0:
            return self.kv_blocks
        return max(0, int(self._kv_bytes() // (self.kv_bytes_per_token * self.block_tokens)))

    def _kv_bytes(self) -> float:
        """What vLLM leaves for the KV cache (the module docstring); may be negative."""
        return (self.gpu_mem_bytes * self.gpu_mem_util - self.weight_bytes - self.non_torch_bytes
                - self.activation_bytes - self.cuda_graph_bytes)

    def memory(self) -> dict[str, float]:
        """vLLM's memory budget in bytes: what the instance may use, each reservation,
        and what is left for the KV cache (the module docstring)."""
        usable = self.gpu_mem_bytes * self.gpu_mem_util
        kv = self._kv_bytes()
        return {"usable": usable, "weights": float(self.weight_bytes), "non_torch": float(self.non_torch_bytes),
                "activation": float(self.activation_bytes), "cuda_graphs": float(self.cuda_graph_bytes),
                "kv": max(0.0, kv)}

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_blocks_total * self.block_tokens


#: Attention of A100 + Llama-2-7B fitted to Vidur's measured FlashAttention profile
#: (``phaser.engine.attention``; 32 layers × the per-layer fit): prefill work, decode KV
#: token, decode request, prefill chunk. Decode MAPE 7.8 %, prefill 3.7 % over the sample.
_VIDUR_A100_LLAMA2_7B = {"c_s": 4.9642e-9, "d_s": 2.7944e-7, "e_s": 4.1231e-5, "g_s": 1.22334e-3}


def _vidur_attention(gpu: str, model: str) -> dict:
    """The A100 Llama-2-7B attention terms carried to another A100/H100 profile by the
    roofline ratios: decode attention is memory bound (d_s scales with the model's KV
    bytes per token and inversely with HBM bandwidth; e_s, the per-request share, with
    bandwidth), prefill attention is compute bound (c_s and the per-chunk g_s scale
    inversely with peak FLOP/s; Llama-3-8B has Llama-2-7B's 32 query heads x 128 and
    32 layers, so its attention FLOPs are the same)."""
    ref = _VIDUR_A100_LLAMA2_7B
    bw = _MEM_BW["a100"] / _MEM_BW[gpu]
    fl = _PEAK_FLOPS["a100"] / _PEAK_FLOPS[gpu]
    kv = _MODELS[model][3] / _MODELS["llama2-7b"][3]
    return {"c_s": ref["c_s"] * fl, "g_s": ref["g_s"] * fl, "d_s": ref["d_s"] * kv * bw, "e_s": ref["e_s"] * bw}


def _scaled_linear(gpu: str, model: str) -> tuple[float, float, float]:
    """The A100's measured token-wise coefficients (ms) carried to ``gpu`` by roofline
    ratios: the floor (streaming the weights) by memory bandwidth, the intercept and
    per-token slope (matmul FLOPs) by dense tensor FLOP/s."""
    floor_ms, a_ms, b_ms = _LINEAR_MS[f"a100-{model}"]
    bw = _MEM_BW["a100"] / _MEM_BW[gpu]
    fl = _PEAK_FLOPS["a100"] / _PEAK_FLOPS[gpu]
    return floor_ms * bw, a_ms * fl, b_ms * fl


def _profile(gpu: str, model: str, linear_ms: tuple[float, float, float] | None = None,
             d_s: float | None = None, source: str = "", attention: str = "vidur",
             mem_gb: int | None = None, gpu_mem_util: float = 0.9, eager: bool = False,
             chunked_budget: int | None = None) -> LatencyProfile:
    """``mem_gb``: a smaller memory variant of the same chip (named ``gpu-<mem>gb-model``):
    the same compute, a smaller KV cache. ``eager``: no CUDA graphs (``--enforce-eager``).
    ``chunked_budget``: the engine always chunks prefills under this token budget
    (vLLM turns chunked prefill on for contexts above 32k)."""
    base_name = f"{gpu}-{model}"
    name = base_name if mem_gb is None else f"{gpu}-{mem_gb}gb-{model}"
    layers, d_model, params, kv_bytes, max_len = _MODELS[model]
    if linear_ms is None:
        linear_ms = _LINEAR_MS[base_name] if base_name in _LINEAR_MS else _scaled_linear(gpu, model)
    floor_ms, a_ms, b_ms = linear_ms
    if attention == "vidur":
        att = _vidur_attention(gpu, model)
    else:  # roofline (the V100 profile: the paper's own decode measurement in d_s)
        att = {"c_s": 4.0 * layers * d_model / (_PEAK_FLOPS[gpu] * ATTN_FLOP_EFFICIENCY),
               "d_s": d_s if d_s is not None else kv_bytes / (_MEM_BW[gpu] * KV_READ_EFFICIENCY), "e_s": 0.0, "g_s": 0.0}
    # vLLM V0 without chunking: the budget is max(max_model_len, 2048)
    budget = chunked_budget if chunked_budget is not None else max(max_len, 2048)
    return LatencyProfile(
        name=name, gpu=gpu, model=model, gpu_mem_bytes=_reported_mem(gpu, mem_gb or _GPU_GB[gpu]),
        weight_bytes=int(params * 2), gpu_mem_util=gpu_mem_util, non_torch_bytes=NON_TORCH_BYTES,
        activation_bytes=activation_bytes(model, budget), cuda_graph_bytes=0 if eager else CUDA_GRAPH_BYTES,
        kv_bytes_per_token=kv_bytes, floor_s=floor_ms / 1e3, a_s=a_ms / 1e3, b_s=b_ms / 1e3,
        max_num_batched_tokens=budget, source=source, max_model_len=max_len,
        chunked_prefill=chunked_budget is not None, **att,
    )


#: V100 decode attention from the paper: 34 → 37 ms as the batch's KV grows 2 k → 6 k tokens.
_V100_D_S = 3e-3 / 4000.0
#: V100 floor: a small decode batch ≈ 34 ms at ≈ 2 k KV tokens, minus that KV's read time.
_V100_FLOOR_MS = 34.0 - 2000 * _V100_D_S * 1e3
#: the chunked-prefill budget of the 128k-context profiles: vLLM V1's default for its API
#: server on 80 GB parts
LONG_CONTEXT_BUDGET = 8192

PROFILES: dict[str, LatencyProfile] = {
    p.name: p
    for p in (
        _profile("v100", "llama2-7b", linear_ms=(_V100_FLOOR_MS, 0.0, 0.32), d_s=_V100_D_S, attention="roofline",
                 source="paper profiling (Jain et al. 2408.13510): 3.2e-4 s/prompt token, 34-37 ms decode"),
        _profile("a100", "llama2-7b", source="Vidur a100_llama2_7b_mlp (TP1) + Vidur-measured attention"),
        _profile("h100", "llama2-7b", source="Vidur h100_llama2_7b_mlp (TP1) + Vidur A100 attention x roofline ratios"),
        _profile("a100", "llama3-8b", source="Vidur a100_llama3_8b_mlp (TP1) + Vidur A100 attention x KV-size ratio"),
        _profile("h100", "llama3-8b", source="LLMServingSim H100 Llama-3.1-8B TP1 + Vidur A100 attention x roofline ratios"),
        # KV-scarce parts (vLLM sizing, the module docstring): V100-16GB (util 0.95, eager) 3.6 k
        # Llama-2-7B tokens, A10G/L4-24GB 12.4 k (Llama-3-8B: 24 k), A100-40GB 46 k
        _profile("v100", "llama2-7b", linear_ms=(_V100_FLOOR_MS, 0.0, 0.32), d_s=_V100_D_S, attention="roofline",
                 mem_gb=16, gpu_mem_util=0.95, eager=True,
                 source="v100-llama2-7b's costs on the 16 GB V100 (the most common cloud V100), util 0.95, eager"),
        _profile("a100", "llama2-7b", mem_gb=40, source="a100-llama2-7b's costs on the 40 GB A100"),
        _profile("a100", "llama3-8b", mem_gb=40, source="a100-llama3-8b's costs on the 40 GB A100"),
        _profile("a10g", "llama2-7b", source="A100 measured costs x roofline ratios (0.6 TB/s, 70 TFLOP/s), 24 GB GDDR6"),
        _profile("a10g", "llama3-8b", source="A100 measured costs x roofline ratios (0.6 TB/s, 70 TFLOP/s), 24 GB GDDR6"),
        _profile("l4", "llama2-7b", source="A100 measured costs x roofline ratios (0.3 TB/s, 121 TFLOP/s), 24 GB GDDR6"),
        _profile("l4", "llama3-8b", source="A100 measured costs x roofline ratios (0.3 TB/s, 121 TFLOP/s), 24 GB GDDR6"),
        # long context (128k) for prompt-heavy traces (mooncake): Llama-3-8B's costs, Llama-3.1's
        # context, chunked prefill under an 8,192-token budget (a 128k forward pass would reserve
        # 20 GiB of activations)
        _profile("a100", "llama31-8b", chunked_budget=LONG_CONTEXT_BUDGET,
                 source="a100-llama3-8b's coefficients, 128k context (Llama-3.1-8B), chunked prefill 8192"),
        _profile("h100", "llama31-8b", chunked_budget=LONG_CONTEXT_BUDGET,
                 source="h100-llama3-8b's coefficients, 128k context (Llama-3.1-8B), chunked prefill 8192"),
    )
}

#: bounds of a ``NAME@xK`` time scale (a GPU 20x slower or faster than its profile is a different part)
SCALE_BOUNDS = (0.05, 20.0)


def scaled(p: LatencyProfile, k: float) -> LatencyProfile:
    """``p`` with every time coefficient multiplied by ``k`` (memory facts unchanged):
    the same part running ``k`` times slower — what a digital twin fits when an
    instance is slower than the profile the router was told (``phaser.twin``)."""
    import dataclasses

    return dataclasses.replace(p, name=f"{p.name}@x{k:g}", floor_s=p.floor_s * k, a_s=p.a_s * k, b_s=p.b_s * k,
                               c_s=p.c_s * k, d_s=p.d_s * k, e_s=p.e_s * k, g_s=p.g_s * k,
                               source=f"{p.source} (times x{k:g})".strip())


def get_profile(name: str) -> LatencyProfile:
    """The named profile, or the profile file at that path (``*.json``, what
    ``phaser calibrate`` writes), optionally ``@xK``: every time ``K`` times
    longer (``a100-llama3-8b@x1.5``: an A100 running 1.5x slower); ``PhaserError``
    listing the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        pass
    base, sep, k = name.rpartition("@x")
    if sep and base:
        try:
            kf = float(k)
        except ValueError:
            raise PhaserError(f"profile {name!r}: the time scale after @x must be a number, got {k!r}") from None
        if not SCALE_BOUNDS[0] <= kf <= SCALE_BOUNDS[1]:
            raise PhaserError(f"profile {name!r}: the time scale must be in [{SCALE_BOUNDS[0]:g}, {SCALE_BOUNDS[1]:g}]")
        return scaled(get_profile(base), kf)
    if name.endswith(".json") or "/" in name:
        return load_profile_file(name)
    raise PhaserError(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))} (or a profile file, *.json)")


def profile_to_dict(p: LatencyProfile) -> dict:
    from dataclasses import asdict

    return asdict(p)


def load_profile_file(path: str) -> LatencyProfile:
    """A profile from JSON: every ``LatencyProfile`` field, plus optional ``fit``
    notes (ignored here). One readable line on any problem."""
    import json
    from dataclasses import fields

    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as e:
        raise PhaserError(f"cannot read profile file {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise PhaserError(f"profile file {path} is not JSON: {e}") from None
    if not isinstance(d, dict):
        raise PhaserError(f"profile file {path} must hold a JSON object")
    known = {f.name: f for f in fields(LatencyProfile)}
    missing = [k for k in ("name", "gpu", "model", "gpu_mem_bytes", "weight_bytes", "kv_bytes_per_token", "floor_s",
                           "a_s", "b_s", "c_s", "d_s", "max_num_batched_tokens") if k not in d]
    if missing:
        raise PhaserError(f"profile file {path} lacks {', '.join(missing)}")
    args = {k: v for k, v in d.items() if k in known}
    try:
        p = LatencyProfile(**args)
    except TypeError as e:
        raise PhaserError(f"profile file {path}: {e}") from None
    for k in ("floor_s", "a_s", "b_s", "c_s", "d_s"):
        v = getattr(p, k)
        if not isinstance(v, (int, float)) or not (0 <= v < 1e3):
            raise PhaserError(f"profile file {path}: {k} must be a number of seconds in [0, 1000), got {v!r}")
    for k in ("max_num_batched_tokens", "max_num_seqs", "max_model_len", "block_tokens"):
        if not isinstance(getattr(p, k), int) or getattr(p, k) < 1:
            raise PhaserError(f"profile file {path}: {k} must be a positive integer")
    if p.kv_blocks_total < 1:
        raise PhaserError(f"profile file {path}: no KV capacity (set kv_blocks, or the memory facts)")
    return p


__all__ = ["LatencyProfile", "PROFILES", "get_profile", "ATTN_FLOP_EFFICIENCY",
           "KV_READ_EFFICIENCY"]
