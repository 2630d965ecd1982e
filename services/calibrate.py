"""``phaser calibrate``: probe a real engine, fit the simulator's iteration-time
model to it, write a profile file every ``--profile`` accepts.

Probes (sequential, so each measures what it means to):

* **prefill** — one request alone, prompts from 16 tokens up to what a slot
  holds, ``max_tokens`` 1. Measured: the engine's own prompt time
  (``timings.prompt_ms``, llama.cpp) when it reports one, else the TTFT seen
  on the stream. Modelled as the prompt's chunks of at most the engine's
  batch (``phaser.engine.fit.prefill_iterations``).
* **decode** — ``B`` = 1 … ``max_seqs`` requests at once, short (64) and long
  (``long_prompt``) prompts, 40 output tokens each, ``ignore_eos``. Measured:
  the median gap between chunks once all ``B`` are decoding (tokens 8 to
  32 of each stream). Modelled as one iteration of ``B`` tokens reading
  ``B × (prompt + tokens so far)`` KV tokens.

The fit is ``phaser.engine.fit.fit`` (the one routine every calibration uses);
the result prints its coefficients and the MAPE of each probe group. The
profile written has the engine's scheduler facts: ``max_num_seqs`` = slots,
``max_model_len`` = context per slot, KV blocks = slots × context ÷ 16, and
``chunked_prefill`` with ``max_num_batched_tokens`` = the engine's batch
(llama.cpp's ``n_batch`` default, 2,048): llama.cpp's server mixes prompt
chunks into the same batch as running decodes.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson

from phaser.backends import prompts
from phaser.engine.fit import Probe, fit, prefill_iterations
from phaser.errors import PhaserError


@dataclass
class CalibrateConfig:
    endpoint: str
    out: str
    name: str = ""
    max_seqs: int | None = None  # None: ask the engine (/slots)
    ctx_per_seq: int | None = None
    batch_tokens: int = 2048
    reps: int = 2
    long_prompt: int = 512
    max_prompt: int = 2048
    api_key: str | None = None
    timeout_s: float = 300.0


async def _stream_one(http: httpx.AsyncClient, body: dict) -> dict:
    t0 = time.monotonic()
    chunks: list[float] = []
    timings: dict = {}
    usage: dict = {}
    async with http.stream("POST", "/v1/completions", content=orjson.dumps(body),
                           headers={"Content-Type": "application/json"}) as r:
        if r.status_code != 200:
            raise PhaserError(f"engine answered HTTP {r.status_code} to a probe: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            c = orjson.loads(data)
            if any(ch.get("text") for ch in c.get("choices") or ()):
                chunks.append(time.monotonic() - t0)
            timings = c.get("timings") or timings
            usage = c.get("usage") or usage
    return {"chunks": chunks, "timings": timings, "usage": usage}


async def _probe(cfg: CalibrateConfig, log) -> tuple[list[Probe], dict]:
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    async with httpx.AsyncClient(base_url=cfg.endpoint.rstrip("/"), headers=headers,
                                 timeout=httpx.Timeout(cfg.timeout_s, connect=5.0)) as http:
        try:
            h = await http.get("/health")
        except httpx.HTTPError as e:
            raise PhaserError(f"engine {cfg.endpoint} not reachable: {e.__class__.__name__}: {e}") from None
        if h.status_code != 200:
            raise PhaserError(f"engine {cfg.endpoint} /health answered HTTP {h.status_code}")
        facts = {"engine": "unknown", "model": "unknown"}
        try:
            d = (await http.get("/v1/models")).json()
            m = (d.get("data") or [{}])[0]
            facts["model"] = Path(str(m.get("id", "unknown"))).name
            ctx = (m.get("meta") or {}).get("n_ctx") or m.get("max_model_len")
        except (httpx.HTTPError, ValueError, TypeError, IndexError):
            ctx = None
        slots = None
        try:
            s = await http.get("/slots")
            if s.status_code == 200 and isinstance(s.json(), list):
                slots = len(s.json())
                ctx = int(s.json()[0].get("n_ctx") or ctx or 0) or ctx
                facts["engine"] = "llama.cpp"
        except (httpx.HTTPError, ValueError, TypeError, IndexError):
            pass
        max_seqs = cfg.max_seqs or slots
        ctx = cfg.ctx_per_seq or ctx
        if not max_seqs or not ctx:
            raise PhaserError("cannot learn the engine's slots and context per request from it: "
                              "give --max-seqs and --ctx-per-seq")
        facts.update(max_seqs=int(max_seqs), ctx_per_seq=int(ctx))
        pool = None
        try:
            t = await http.post("/tokenize", json={"content": prompts.POOL_TEXT, "add_special": False})
            pool = sorted({int(x["id"] if isinstance(x, dict) else x) for x in t.json().get("tokens", [])}) or None
        except (httpx.HTTPError, ValueError, TypeError, KeyError):
            pass
        if pool is None:
            raise PhaserError("calibration needs exact prompt lengths: the engine has no /tokenize endpoint")
        seq = [0]

        def body(prompt_len: int, out: int) -> dict:
            seq[0] += 1
            return {"prompt": prompts.token_prompt(f"calib-{time.time_ns()}-{seq[0]}", prompt_len, pool),
                    "max_tokens": out, "ignore_eos": True, "stream": True, "temperature": 0.0,
                    "stream_options": {"include_usage": True}, "cache_prompt": False}

        probes: list[Probe] = []
        top = max(32, min(int(ctx) - 48, cfg.max_prompt))
        sizes = sorted({int(x) for x in np.geomspace(16, top, 8)})
        log(f"calibrate: prefill probes, prompts {sizes} tokens x {cfg.reps}")
        for p in sizes:
            for _ in range(cfg.reps):
                r = await _stream_one(http, body(p, 1))
                ms = r["timings"].get("prompt_ms")
                measured = ms / 1000.0 if isinstance(ms, (int, float)) and ms > 0 else (r["chunks"][0] if r["chunks"] else None)
                if measured:
                    probes.append(Probe(prefill_iterations(p, cfg.batch_tokens), measured, "prefill"))
        facts["prefill_source"] = "engine timings.prompt_ms" if probes and "prompt_ms" in r["timings"] else "stream TTFT"
        out_tokens, lo, hi = 40, 8, 32
        for plen in sorted({64, min(cfg.long_prompt, cfg.max_prompt, int(ctx) - out_tokens - 8)}):
            log(f"calibrate: decode probes, batch 1..{max_seqs}, prompt {plen} tokens")
            for b in range(1, int(max_seqs) + 1):
                for _ in range(cfg.reps):
                    rs = await asyncio.gather(*(_stream_one(http, body(plen, out_tokens)) for _ in range(b)))
                    # gaps once every stream is decoding: from the last stream's 8th token on
                    start = max(r["chunks"][min(lo, len(r["chunks"]) - 1)] for r in rs)
                    stop = min(r["chunks"][min(hi, len(r["chunks"]) - 1)] for r in rs)
                    gaps = [g for r in rs for a, g in zip(r["chunks"], np.diff(r["chunks"])) if start <= a < stop]
                    if len(gaps) >= 3:
                        mid = (lo + hi) / 2
                        probes.append(Probe(((float(b), 0.0, b * (plen + mid)),), float(np.median(gaps)), "decode"))
        return probes, facts


def run_calibrate(cfg: CalibrateConfig, log=print) -> dict:
    from datetime import datetime, timezone

    from phaser.engine.profiles import load_profile_file

    t0 = time.monotonic()
    probes, facts = asyncio.run(_probe(cfg, log))
    if len(probes) < 6:
        raise PhaserError(f"only {len(probes)} usable probes; the engine's streams were too short to time")
    res = fit(probes)
    for line in res.table():
        log(f"calibrate: {line}")
    name = cfg.name or f"calibrated-{facts['engine']}-{facts['model']}".replace(".gguf", "")
    blocks = max(1, facts["max_seqs"] * facts["ctx_per_seq"] // 16)
    prof = {
        "name": name, "gpu": "measured", "model": facts["model"], "gpu_mem_bytes": 0, "weight_bytes": 0,
        "kv_bytes_per_token": 1, **{k: round(v, 9) for k, v in res.coef.items()},
        "max_num_batched_tokens": int(cfg.batch_tokens), "max_num_seqs": facts["max_seqs"],
        "max_model_len": facts["ctx_per_seq"], "kv_blocks": blocks, "block_tokens": 16, "chunked_prefill": True,
        "source": f"phaser calibrate of {facts['engine']} at {cfg.endpoint}",
        "fit": {"mape": {k: round(v, 4) for k, v in res.mape.items()}, "probes": res.n,
                "prefill_source": facts.get("prefill_source"), "engine": facts["engine"],
                "measured_unix": round(time.time(), 1),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "wall_s": round(time.monotonic() - t0, 1),
                "samples": [{"group": p.group, "iterations": [list(i) for i in p.iterations], "measured_s": p.measured_s}
                            for p in probes]},
    }
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(prof, indent=1))
    load_profile_file(str(out))  # what we wrote is what every --profile accepts
    if not all(math.isfinite(v) for v in res.coef.values()):
        raise PhaserError("the fit did not converge")
    return prof
