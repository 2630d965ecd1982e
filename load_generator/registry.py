"""Named workloads and the one entry point: ``load_workload(spec, n=, rate=, duration_s=, seed=)``.

A spec is a workload name or a file path, optionally followed by options and
joined with others into a mix::

    paper-mix                          # the paper's five-task mix, Poisson at 20 req/s
    paper-mix-uniform                  # the same tasks, 20 % each (not the paper's shares)
    paper-mix?cv=3                     # same lengths, Gamma arrivals with CV 3 (bursty)
    sharegpt?amp=0.5&period=60         # sinusoidal rate: mean*(1 + 0.5 sin(2 pi t / 60 s))
    arxiv-summarization?steps=30x10/30x40   # piecewise: 30 s at 10 req/s, 30 s at 40, repeating
    azure-conv?speed=2                 # replay the trace twice as fast
    azure-conv?skip=3000               # replay it from its 3,001st request (arrivals rebased to 0)
    traces/my.csv                      # Azure / BurstGPT / Mooncake / phaser CSV-JSONL / length-stats file
    paper-mix@0.8+azure-code@0.2       # mix by share of requests (superposed streams)
    paper-mix?rate=8>azure-code?rate=1.5   # a sequence: the first half, then the other (quote the > in a shell)
    uniform?prompt=16-256&output=8-64  # lengths log-uniform in those ranges (e.g. for a small CPU engine)

Named workloads:
* ``paper-mix`` — synthetic (``synthetic/paper_mix.py``), tasks in the paper's
  dataset proportions; ``paper-mix-uniform`` — the same tasks at 20 % each.
* ``azure-conv``, ``azure-code`` — the vendored Azure 2023 traces, replayed.
* ``mooncake`` — the vendored Mooncake FAST'25 synthetic trace, replayed: long
  prompts (mean 15k tokens) sharing prefixes (``prefix_ids``, 512-token blocks).
* ``sharegpt``, ``arxiv-summarization`` — (prompt, decode) pairs drawn from the
  vendored length files, with synthetic arrivals.
* ``uniform`` — prompt and output lengths drawn log-uniformly from the
  ``prompt=LO-HI`` and ``output=LO-HI`` ranges (defaults 16-256 and 8-64:
  sized for a small model on a CPU engine, where paper-mix's 4k-token decodes
  would take minutes each), with synthetic arrivals.

Option semantics (decisions where the issue is silent):
* Synthetic sources (paper-mix, length files): ``rate`` defaults to the
  paper's 20 req/s; ``n`` to the paper's 2,000 requests per episode unless
  ``duration_s`` is given, then the process runs for that long.
* Trace replays: the trace is cut to its first ``n`` requests, then (if
  ``rate`` is given) retimed to that mean rate keeping its burst shape, then
  cut to ``duration_s`` seconds of (retimed) time. ``seed`` does not change a
  replay (it has no randomness); arrival options (cv/amp/steps) are refused.
* A mix gives each part ``rate * share`` (default rate 20 req/s) over the same
  window (``duration_s``, or ``n / rate`` seconds), superposes them and keeps
  the first ``n``. Shares are normalized. Part ``i`` uses seed ``seed + i``.
* A sequence ``A>B>…`` (a traffic change mid-run) gives each part an equal
  share of ``n`` (or of ``duration_s``) in order, part ``i`` with seed
  ``seed + i``; each part starts one mean gap after the previous one's last
  arrival. A part's ``rate=`` option overrides ``rate`` for that part alone
  (any single workload takes it). Ids are ``seq-{i}``.
* Workloads always start at ``arrival_s`` >= 0 and ids are ``{name}-{i}``
  (``mix-{i}`` for mixes), unique within the workload.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from load_generator import transforms
from load_generator.readers.detect import read_file, sniff
from load_generator.synthetic import arrivals as arr
from load_generator.synthetic.lengths import EmpiricalLengths, LengthFile, read_length_file
from load_generator.synthetic.paper_mix import PAPER_RATE, PAPER_REQUESTS, paper_mix
from load_generator.trace import Trace, make_request, sort_and_number
from phaser.errors import PhaserError

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"

TRACE_FILES = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-code": "AzureLLMInferenceTrace_code.csv",
    "mooncake": "mooncake_synthetic_trace.jsonl",
}
LENGTH_FILES = {
    "sharegpt": "sarathi_sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
    "arxiv-summarization": "vidur_arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
}
NAMES = ("paper-mix", "paper-mix-uniform", "uniform", *TRACE_FILES, *LENGTH_FILES)
ARRIVAL_OPTIONS = {"cv", "amp", "period", "steps"}
LENGTH_OPTIONS = {"prompt", "output"}  # uniform only
OPTIONS = ARRIVAL_OPTIONS | LENGTH_OPTIONS | {"speed", "rate", "skip"}
UNIFORM_DEFAULTS = {"prompt": (16, 256), "output": (8, 64)}


@lru_cache(maxsize=8)
def _trace_cached(path: str, name: str) -> Trace:
    return read_file(path, name=name)


@lru_cache(maxsize=8)
def _lengths_cached(path: str) -> LengthFile:
    return read_length_file(path)


def _positive(opts: dict, key: str) -> float | None:
    if key not in opts:
        return None
    try:
        x = float(opts[key])
    except ValueError:
        x = math.nan
    if not (x > 0 and math.isfinite(x)):
        raise PhaserError(f"workload option {key}= must be a positive number, got {opts[key]!r}")
    return x


def _arrival_times(n: int | None, rate: float, duration_s: float | None, opts: dict,
                   rng: np.random.Generator) -> np.ndarray:
    """Arrival times for a synthetic source: ``n`` of them, or as many as fit in ``duration_s``."""
    cv, amp, period = _positive(opts, "cv"), opts.get("amp"), _positive(opts, "period")
    steps = opts.get("steps")
    if sum(x is not None for x in (cv, amp, steps)) > 1:
        raise PhaserError("choose one arrival shape: cv=, amp=/period= or steps=")
    if amp is not None:
        try:
            a = float(amp)
        except ValueError:
            raise PhaserError(f"workload option amp= must be a number in [0, 1], got {amp!r}") from None
        fn, rmax = arr.sinusoidal_rate(rate, a, period or 60.0)
        gen = lambda k: arr.varying(k, fn, rmax, rng)  # noqa: E731
        mean = rate
    elif steps is not None:
        try:
            segs = [(float(d), float(r)) for d, r in (s.split("x") for s in steps.split("/"))]
        except ValueError:
            raise PhaserError(f"workload option steps= must look like 30x10/30x40 (seconds x rate), got {steps!r}") from None
        fn, rmax = arr.piecewise_rate(segs)
        gen = lambda k: arr.varying(k, fn, rmax, rng)  # noqa: E731
        mean = sum(d * r for d, r in segs) / sum(d for d, _ in segs)
    elif cv is not None:
        gen = lambda k: arr.gamma(k, rate, cv, rng)  # noqa: E731
        mean = rate
    else:
        gen = lambda k: arr.poisson(k, rate, rng)  # noqa: E731
        mean = rate
    if n is not None:
        times = gen(n)
        return times if duration_s is None else times[times <= duration_s]
    # duration only: draw generously, cut at the duration (extend if the draw fell short)
    k = int(mean * duration_s * 1.3) + 100
    times = gen(k)
    while times[-1] <= duration_s:
        k *= 2
        times = gen(k)
    return times[times <= duration_s]


def _from_lengths(lf: LengthFile, name: str, n, rate, duration_s, seed, opts) -> Trace:
    rng = np.random.default_rng(seed)
    times = _arrival_times(n, rate, duration_s, opts, rng)
    prompt, output = EmpiricalLengths(lf).sample(len(times), rng)
    width = max(1, len(str(len(times) - 1)))
    reqs = [make_request(f"{name}-{i:0{width}d}", float(times[i]), int(prompt[i]), int(output[i]), task=name)
            for i in range(len(times))]
    return Trace(reqs, name=name, skipped={"0 prefill or decode tokens": lf.skipped} if lf.skipped else {})


def _range(opts: dict, key: str) -> tuple[int, int]:
    v = opts.get(key)
    if v is None:
        return UNIFORM_DEFAULTS[key]
    try:
        lo, hi = (int(x) for x in v.split("-"))
    except ValueError:
        lo = hi = 0
    if not 1 <= lo <= hi <= 1_000_000:
        raise PhaserError(f"workload option {key}= must look like 16-256 (1 <= low <= high), got {v!r}")
    return lo, hi


def _uniform(n, rate, duration_s, seed, opts) -> Trace:
    rng = np.random.default_rng([seed, 2])
    times = _arrival_times(n, rate, duration_s, {k: v for k, v in opts.items() if k in ARRIVAL_OPTIONS}, rng)
    k = len(times)

    def draw(lo, hi):
        return np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1), k))).clip(lo, hi).astype(int)

    prompt, output = draw(*_range(opts, "prompt")), draw(*_range(opts, "output"))
    width = max(1, len(str(k - 1)))
    return Trace([make_request(f"uniform-{i:0{width}d}", float(times[i]), int(prompt[i]), int(output[i]), task="uniform")
                  for i in range(k)], name="uniform")


def _replay(trace: Trace, n, rate, duration_s, opts) -> Trace:
    bad = ARRIVAL_OPTIONS & set(opts)
    if bad:
        raise PhaserError(f"option(s) {', '.join(sorted(bad))} shape synthetic arrivals; {trace.name} is a replayed trace "
                          "(use rate= to retime it or speed= to replay it faster)")
    reqs = trace.requests
    if "skip" in opts:  # start later in the trace (disjoint windows for repeated runs)
        try:
            k = int(opts["skip"])
        except ValueError:
            k = -1
        if not 0 <= k < len(reqs):
            raise PhaserError(f"workload option skip= must be a whole number below the trace's {len(reqs)} requests, "
                              f"got {opts['skip']!r}")
        t0 = reqs[k].arrival_s
        reqs = [r.model_copy(update={"arrival_s": r.arrival_s - t0}) for r in reqs[k:]]
    reqs = transforms.truncate(reqs, n=n)
    if "speed" in opts:
        reqs = transforms.speedup(reqs, _positive(opts, "speed"))
    if rate is not None:
        reqs = transforms.retime(reqs, rate)
    reqs = transforms.truncate(reqs, duration_s=duration_s)
    return Trace(reqs, name=trace.name, skipped=dict(trace.skipped))


def _looks_like_path(spec: str) -> bool:
    """A spec that names a file rather than a built-in workload: it has a
    directory separator, starts with ``.`` or ``~``, or has a file suffix
    (built-in names have none)."""
    return "/" in spec or "\\" in spec or spec.startswith((".", "~")) or bool(Path(spec).suffix)


def _split_options(spec: str) -> tuple[str, dict[str, str]]:
    base, q, query = spec.partition("?")
    if not q:
        return spec, {}
    opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = set(opts) - OPTIONS
    if unknown or not opts:
        raise PhaserError(f"unknown workload option(s) {', '.join(sorted(unknown)) or query!r} in {spec!r}; "
                          f"known: {', '.join(sorted(OPTIONS))}")
    return base, opts


def _single(spec: str, n, rate, duration_s, seed) -> Trace:
    base, opts = _split_options(spec.strip())
    if "rate" in opts:  # this part's own rate (in a sequence or a mix, or alone)
        rate = _positive(opts, "rate")
        opts = {k: v for k, v in opts.items() if k != "rate"}
    syn_rate = PAPER_RATE if rate is None else rate
    syn_n = PAPER_REQUESTS if (n is None and duration_s is None) else n
    if "skip" in opts and base not in TRACE_FILES and not Path(base).expanduser().exists():
        raise PhaserError(f"option skip= starts a replayed trace later; {base!r} is synthetic (give it a seed instead)")
    if base != "uniform" and LENGTH_OPTIONS & set(opts):
        raise PhaserError(f"options prompt=/output= belong to the uniform workload, not {base!r}")
    if base == "uniform":
        return _uniform(syn_n, syn_rate, duration_s, seed, opts)
    if base in ("paper-mix", "paper-mix-uniform"):
        rng = np.random.default_rng([seed, 1])  # arrival stream independent of the length draws
        times = _arrival_times(syn_n, syn_rate, duration_s, opts, rng)
        return paper_mix(len(times), times, seed=seed, name=base)
    if base in LENGTH_FILES:
        return _from_lengths(_lengths_cached(str(DATA_DIR / LENGTH_FILES[base])), base, syn_n, syn_rate,
                             duration_s, seed, opts)
    if base in TRACE_FILES:
        return _replay(_trace_cached(str(DATA_DIR / TRACE_FILES[base]), base), n, rate, duration_s, opts)
    path = Path(base).expanduser()
    if not path.exists():
        if _looks_like_path(base):
            raise PhaserError(f"workload file {base!r} does not exist")
        raise PhaserError(f"unknown workload {base!r}: use one of {', '.join(NAMES)} or the path of a trace file")
    resolved = str(path.resolve())
    if sniff(path) == "lengths":
        return _from_lengths(read_length_file(path), path.stem, syn_n, syn_rate, duration_s, seed, opts)
    # user files are re-read on every call (they may change between runs): no cache
    return _replay(read_file(resolved, name=path.stem), n, rate, duration_s, opts)


def _parse_mix(spec: str) -> list[tuple[str, float]]:
    parts = []
    for item in spec.split("+"):
        base, at, share = item.strip().rpartition("@")
        if not at:
            raise PhaserError(f"in a mix every part needs a share, e.g. paper-mix@0.7+azure-code@0.3; got {item!r}")
        try:
            s = float(share)
        except ValueError:
            s = math.nan
        if not (s > 0 and math.isfinite(s)):
            raise PhaserError(f"share of {base!r} in the mix must be a positive number, got {share!r}")
        parts.append((base, s))
    return parts


def resolve(spec: str, *, n: int | None = None, rate: float | None = None, duration_s: float | None = None,
            seed: int = 0) -> Trace:
    """Like ``load_workload`` but returns the ``Trace`` (with skipped-row counts)."""
    if not isinstance(spec, str) or not spec.strip():
        raise PhaserError("workload spec is empty: give a name (" + ", ".join(NAMES) + ") or a file path")
    if n is not None and n < 1:
        raise PhaserError(f"request count must be >= 1, got {n}")
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise PhaserError(f"rate must be a positive number of requests per second, got {rate}")
    if duration_s is not None and not (duration_s > 0 and math.isfinite(duration_s)):
        raise PhaserError(f"duration must be a positive number of seconds, got {duration_s}")
    if ">" in spec and not Path(spec).exists():
        parts = [x.strip() for x in spec.split(">")]
        if len(parts) < 2 or not all(parts):
            raise PhaserError(f"in a sequence every part needs a workload, e.g. 'paper-mix>azure-code'; got {spec!r}")
        k = len(parts)
        total = n if n is not None else (None if duration_s is not None else PAPER_REQUESTS)
        sizes = [total // k + (1 if i < total % k else 0) for i in range(k)] if total is not None else [None] * k
        if total is not None and min(sizes) < 1:
            raise PhaserError(f"a sequence of {k} parts needs at least {k} requests, got {total}")
        streams, skipped, t_next = [], {}, 0.0
        for i, (part, size) in enumerate(zip(parts, sizes)):
            t = resolve(part, n=size, rate=rate, duration_s=duration_s / k if duration_s is not None else None,
                        seed=seed + i)
            reqs = t.requests
            if not reqs:
                raise PhaserError(f"sequence part {part!r} is empty with these options")
            gap = (reqs[-1].arrival_s - reqs[0].arrival_s) / max(1, len(reqs) - 1)
            shift = t_next - reqs[0].arrival_s
            streams.append([r.model_copy(update={"id": f"s{i}-{r.id}", "arrival_s": r.arrival_s + shift}) for r in reqs])
            t_next = streams[-1][-1].arrival_s + gap
            for key, v in t.skipped.items():
                skipped[f"{t.name}: {key}"] = v
        out = Trace(sort_and_number(transforms.merge(streams), "seq"), name="seq", skipped=skipped)
    elif "+" in spec or ("@" in spec and not Path(spec).exists()):
        parts = _parse_mix(spec)
        total = sum(s for _, s in parts)
        mix_rate = PAPER_RATE if rate is None else rate
        window = duration_s if duration_s is not None else (n or PAPER_REQUESTS) / mix_rate
        streams, skipped = [], {}
        for i, (base, share) in enumerate(parts):
            t = _single(base, None, mix_rate * share / total, window, seed + i)
            streams.append([r.model_copy(update={"id": f"m{i}-{r.id}"}) for r in t.requests])
            for k, v in t.skipped.items():
                skipped[f"{t.name}: {k}"] = v
        merged = transforms.truncate(transforms.merge(streams), n=n)
        out = Trace(sort_and_number(merged, "mix"), name="mix", skipped=skipped)
    else:
        out = _single(spec, n, rate, duration_s, seed)
    if not out.requests:
        raise PhaserError(f"workload {spec!r} is empty with these options")
    for reason, count in out.skipped.items():
        log.info("workload %s: skipped %d rows (%s)", out.name, count, reason)
    return out


def load_workload(spec: str, *, n: int | None = None, rate: float | None = None, duration_s: float | None = None,
                  seed: int = 0):
    """The workload named (or stored at) ``spec`` as ``protos.Request``s sorted by arrival, ids unique.

    Raises ``PhaserError`` (one line) for an unknown name, a bad option, or an
    unreadable/malformed file (naming file and line).
    """
    return resolve(spec, n=n, rate=rate, duration_s=duration_s, seed=seed).requests
