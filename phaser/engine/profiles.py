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

Memory: a profile's KV cache holds ``(gpu_mem · gpu_mem_util − weight_bytes)``
bytes in blocks of ``block_tokens`` tokens (vLLM; activation workspace is not
subtracted — a few hundred MB, < 1 % of the cache on 80 GB parts). A100 and
H100 are the 80 GB parts (the roofline numbers above are theirs). V100 is the
**32 GB** SXM2 part: the paper's Microsoft setup (Azure NDv2 class machines)
and the only V100 where Llama-2-7B leaves a usable cache (16 GB × 0.9 −
13.5 GB ≈ 0.9 GB ≈ 1,700 tokens would not even hold a batch of the paper's
workload); with 32 GB it holds ≈ 29 k tokens.

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
_PEAK_FLOPS = {"a100": 312e12, "h100": 989e12, "v100": 125e12}
_MEM_BW = {"a100": 2.039e12, "h100": 3.35e12, "v100": 0.9e12}
_GPU_MEM = {"a100": 80 * GiB, "h100": 80 * GiB, "v100": 32 * GiB}

# Model facts: (layers, d_model, params, kv_bytes_per_token, max_model_len).
# Params from the model cards: Llama-2-7B 6.74 B, Llama-3-8B 8.03 B; FP16/BF16 weights.
_MODELS = {
    "llama2-7b": (32, 4096, 6.74e9, 2 * 32 * 4096 * 2, 4096),
    "llama3-8b": (32, 4096, 8.03e9, 2 * 32 * 8 * 128 * 2, 8192),
    # Llama-3.1-8B: Llama-3-8B's architecture with a 128k context (RoPE scaling)
    "llama31-8b": (32, 4096, 8.03e9, 2 * 32 * 8 * 128 * 2, 131072),
}

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
        free = self.gpu_mem_bytes * self.gpu_mem_util - self.weight_bytes
        return max(0, int(free // (self.kv_bytes_per_token * self.block_tokens)))

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


def _profile(gpu: str, model: str, linear_ms: tuple[float, float, float] | None = None,
             d_s: float | None = None, source: str = "", attention: str = "vidur",
             mem_gib: int | None = None) -> LatencyProfile:
    """``mem_gib``: a smaller memory variant of the same chip (named ``gpu-<mem>gb-model``):
    the same compute, a smaller KV cache."""
    base_name = f"{gpu}-{model}"
    name = base_name if mem_gib is None else f"{gpu}-{mem_gib}gb-{model}"
    layers, d_model, params, kv_bytes, max_len = _MODELS[model]
    floor_ms, a_ms, b_ms = linear_ms if linear_ms is not None else _LINEAR_MS[base_name]
    if attention == "vidur":
        att = _vidur_attention(gpu, model)
    else:  # roofline (the V100 profile: the paper's own decode measurement in d_s)
        att = {"c_s": 4.0 * layers * d_model / (_PEAK_FLOPS[gpu] * ATTN_FLOP_EFFICIENCY),
               "d_s": d_s if d_s is not None else kv_bytes / (_MEM_BW[gpu] * KV_READ_EFFICIENCY), "e_s": 0.0, "g_s": 0.0}
    return LatencyProfile(
        name=name, gpu=gpu, model=model, gpu_mem_bytes=_GPU_MEM[gpu] if mem_gib is None else mem_gib * GiB,
        weight_bytes=int(params * 2),
        kv_bytes_per_token=kv_bytes, floor_s=floor_ms / 1e3, a_s=a_ms / 1e3, b_s=b_ms / 1e3,
        max_num_batched_tokens=max_len, source=source, max_model_len=max_len, **att,
    )


#: V100 decode attention from the paper: 34 → 37 ms as the batch's KV grows 2 k → 6 k tokens.
_V100_D_S = 3e-3 / 4000.0
#: V100 floor: a small decode batch ≈ 34 ms at ≈ 2 k KV tokens, minus that KV's read time.
_V100_FLOOR_MS = 34.0 - 2000 * _V100_D_S * 1e3

PROFILES: dict[str, LatencyProfile] = {
    p.name: p
    for p in (
        _profile("v100", "llama2-7b", linear_ms=(_V100_FLOOR_MS, 0.0, 0.32), d_s=_V100_D_S, attention="roofline",
                 source="paper profiling (Jain et al. 2408.13510): 3.2e-4 s/prompt token, 34-37 ms decode"),
        _profile("a100", "llama2-7b", source="Vidur a100_llama2_7b_mlp (TP1) + Vidur-measured attention"),
        _profile("h100", "llama2-7b", source="Vidur h100_llama2_7b_mlp (TP1) + Vidur A100 attention x roofline ratios"),
        _profile("a100", "llama3-8b", source="Vidur a100_llama3_8b_mlp (TP1) + Vidur A100 attention x KV-size ratio"),
        _profile("h100", "llama3-8b", source="LLMServingSim H100 Llama-3.1-8B TP1 + Vidur A100 attention x roofline ratios"),
        # KV-scarce memory variants of the same chips (vLLM sizing: memory x 0.9 - weights):
        # V100-16GB holds 3,776 Llama-2-7B KV tokens (the 32 GB part 33,264), A100-40GB 48,016
        _profile("v100", "llama2-7b", linear_ms=(_V100_FLOOR_MS, 0.0, 0.32), d_s=_V100_D_S, attention="roofline",
                 mem_gib=16, source="v100-llama2-7b's costs on the 16 GB V100 (the most common cloud V100)"),
        _profile("a100", "llama2-7b", mem_gib=40, source="a100-llama2-7b's costs on the 40 GB A100"),
        _profile("a100", "llama3-8b", mem_gib=40, source="a100-llama3-8b's costs on the 40 GB A100"),
        # long context (128k) for prompt-heavy traces (mooncake): Llama-3-8B's costs, Llama-3.1's context
        _profile("a100", "llama31-8b", source="a100-llama3-8b's coefficients, 128k context (Llama-3.1-8B)"),
        _profile("h100", "llama31-8b", source="h100-llama3-8b's coefficients, 128k context (Llama-3.1-8B)"),
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
