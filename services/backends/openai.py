"""The ``openai`` worker backend: one real engine per hosted instance, driven
over its OpenAI-compatible HTTP API (vLLM, SGLang, llama.cpp server, TGI).

``OpenAIInstance`` offers the worker exactly what a simulated
``phaser.engine.instance.Instance`` offers (``refusal``, ``add``,
``advance``, ``status``, ``next_event_time``, plus ``cancel``), so
``services.worker.WorkerCore`` — duplicates, fencing, commits, heartbeats —
is the same code for both backends. Times are the stack clock at time scale
1 (real engines run in real time).

Per request: a streaming completion (``stream: true``, usage included),
``max_tokens`` = the request's ``output_tokens`` with ``ignore_eos`` (vLLM,
llama.cpp and SGLang honour it; what the engine really produced is recorded
from its ``usage``), a prompt of exactly ``prompt_tokens`` of the engine's
tokens (``phaser.backends.prompts``), or the request's ``prompt_text``.
Timing comes from the stream (``phaser.backends.stream``).

Failures, one rule (the faults issue's):

* **The engine refuses** (HTTP 4xx, e.g. a prompt over its context): the
  request ends ``rejected`` with the engine's own message. Not retried, not a
  failure of the engine.
* **Transport failures and 5xx** (connection refused or reset, timeouts, a
  server error, a stream that breaks off): nothing has reached the client yet
  (completions are published only at the end), so resending the whole request
  is safe; it is retried ``retries`` times with jittered exponential backoff
  (tenacity). Each failure counts towards the endpoint's circuit breaker
  (``phaser.backends.circuit``); when it opens, heartbeats say ``unhealthy``,
  the router fails the instance over and re-routes what was in flight there
  (the fence notice reaches ``cancel``). A request that exhausted its retries
  is parked, never dropped: it is resent when the circuit closes again, unless
  the router moved it elsewhere first. No request ends ``error`` here; the
  router's re-route limit decides that.
* **Telemetry**: every heartbeat period the instance polls ``/health`` (the
  circuit's probe while it is open) and ``/metrics`` (+ ``/slots`` on
  llama.cpp), mapped by ``phaser.backends.telemetry``; the heartbeat carries
  the poll's age and lists what the engine does not report.

Concurrency per endpoint is bounded (``max_concurrency`` streams; more wait
in the worker, counted as ``waiting`` when the engine reports nothing).
Connections are pooled (one ``httpx.AsyncClient`` per endpoint). The API key,
if any, is sent as a bearer token and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import httpx
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from phaser.backends import prompts
from phaser.backends.circuit import CircuitBreaker
from phaser.backends.stream import StreamTimer
from phaser.backends.telemetry import EngineTelemetry, from_metrics, merge_llamacpp_slots, parse_metrics, status_fields
from phaser.errors import PhaserError

log = logging.getLogger("phaser.worker.openai")


class Refused(Exception):
    """The engine answered 4xx: it will never serve this request."""


class Transient(Exception):
    """A failure after which resending the request is safe."""


class CircuitOpen(Exception):
    """The endpoint's circuit opened: stop retrying, park the request."""


@dataclass(frozen=True)
class OpenAIConfig:
    max_concurrency: int = 8
    connect_timeout_s: float = 5.0
    #: longest silence between two chunks of a stream (a long prefill on a busy CPU engine counts)
    read_timeout_s: float = 120.0
    retries: int = 3
    failure_threshold: int = 3
    open_s: float = 5.0
    poll_s: float = 0.5
    api_key: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.retries < 1 or not self.read_timeout_s > 0 or not self.poll_s > 0:
            raise PhaserError("--max-concurrency, --retries must be >= 1, timeouts and the poll period > 0")

    def __repr__(self) -> str:  # never print the key
        return f"OpenAIConfig(max_concurrency={self.max_concurrency}, retries={self.retries}, model={self.model!r})"


class OpenAIInstance:
    def __init__(self, index: int, endpoint: str, profile, clock, cfg: OpenAIConfig = OpenAIConfig()):
        if clock.time_scale != 1.0:
            raise PhaserError("the openai backend runs real engines in real time: --time-scale must be 1")
        self.index = index
        self.endpoint = endpoint.rstrip("/")
        self.profile = profile
        self.clock = clock
        self.cfg = cfg
        self.breaker = CircuitBreaker(cfg.failure_threshold, cfg.open_s)
        self.itl = None  # phaser.buckets.Buckets, set by a worker that exports metrics
        self.completed = 0
        self.refused = 0
        self.failures = 0
        self.retried = 0
        self._done: list = []
        self._tasks: dict[str, asyncio.Task] = {}
        self._parked: dict[str, object] = {}  # request id -> Request waiting for the circuit to close
        self._sem = asyncio.Semaphore(cfg.max_concurrency)
        self._sending = 0
        self._telemetry = EngineTelemetry()
        self._polled_at: float | None = None
        self._pool: list[int] | None = None
        self._model: str | None = cfg.model
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.endpoint, headers=headers,
            timeout=httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s),
            limits=httpx.Limits(max_connections=cfg.max_concurrency + 2, max_keepalive_connections=cfg.max_concurrency + 2))
        self._poller: asyncio.Task | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self, deadline_s: float = 60.0) -> None:
        """Wait (up to ``deadline_s``) until the engine answers ``/health``, learn its
        model name and token pool, start polling. PhaserError if it never does."""
        t_end = time.monotonic() + deadline_s
        last = ""
        while True:
            try:
                r = await self._http.get("/health")
                if r.status_code == 200:
                    break
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                last = f"{e.__class__.__name__}: {e}"
            if time.monotonic() >= t_end:
                raise PhaserError(f"engine {self.endpoint} not reachable within {deadline_s:.0f}s ({last})")
            await asyncio.sleep(0.5)
        if self._model is None:
            try:
                r = await self._http.get("/v1/models")
                data = r.json().get("data") or []
                self._model = data[0]["id"] if data else None
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
                self._model = None
        self._pool = await self._token_pool()
        if self._pool is None:
            log.warning("%s has no tokenize endpoint: prompts are approximated as one word per token", self.endpoint)
        await self._poll()
        self._poller = asyncio.create_task(self._poll_loop())

    async def close(self) -> None:
        for t in [self._poller, *self._tasks.values()]:
            if t is not None:
                t.cancel()
        await asyncio.gather(*[t for t in [self._poller, *self._tasks.values()] if t is not None], return_exceptions=True)
        await self._http.aclose()

    async def _token_pool(self) -> list[int] | None:
        for path, body in (("/tokenize", {"content": prompts.POOL_TEXT, "add_special": False}),
                           ("/tokenize", {"model": self._model, "prompt": prompts.POOL_TEXT, "add_special_tokens": False})):
            try:
                r = await self._http.post(path, json=body)
                if r.status_code == 200:
                    toks = r.json().get("tokens")
                    ids = sorted({int(t["id"] if isinstance(t, dict) else t) for t in toks or []})
                    if len(ids) >= 16:
                        return ids
            except (httpx.HTTPError, ValueError, TypeError, KeyError):
                pass
        return None

    # ------------------------------------------------------------ the engine interface
    def refusal(self, req) -> str | None:
        return None  # the engine itself decides (and says why: status "rejected")

    def add(self, req, t: float) -> None:
        if req.id in self._tasks or req.id in self._parked:
            raise PhaserError(f"request {req.id!r} added twice to instance {self.index}")
        self._tasks[req.id] = asyncio.create_task(self._serve(req))

    def cancel(self, request_id: str) -> bool:
        """The router moved this request elsewhere: stop serving it here."""
        task = self._tasks.pop(request_id, None)
        if task is not None:
            task.cancel()
        return (self._parked.pop(request_id, None) is not None) or task is not None

    def advance(self, now: float) -> list:
        out, self._done = self._done, []
        return out

    def next_event_time(self) -> float:
        if self._done:
            return -math.inf
        if self._tasks:
            # a stream may end any moment; 50 ms delays only the *publication* of a completion
            # (its times are taken at the stream's end), and a faster poll costs the engines CPU
            return self.clock.now() + 0.05
        return math.inf

    def status(self, t: float):
        from protos.messages import InstanceStatus

        total = int(getattr(self.profile, "kv_blocks_total", 0) or max(1, self.profile.kv_capacity_tokens // 16))
        tel = self._telemetry
        busy = len(self._tasks) - len(self._parked)
        fields, unknown = status_fields(tel, total, inflight=min(busy, self._sending))
        if "waiting" in unknown:  # the engine does not say; what waits in this worker is known
            fields["waiting"] = max(0, busy - self._sending) + len(self._parked)
            unknown.remove("waiting")
        age = 0.0 if self._polled_at is None else max(0.0, t - self._polled_at)
        healthy = self.breaker.healthy
        return InstanceStatus(
            instance=self.index, ts_s=t, profile=self.profile.name, health="ok" if healthy else "unhealthy",
            reason="" if healthy else f"engine {self.endpoint}: circuit {self.breaker.state} ({self.breaker.last_error})"[:2000],
            completed=self.completed, unknown=unknown[:16], telemetry_age_s=min(age, 1e12), **fields)

    # ------------------------------------------------------------ serving
    async def _serve(self, req) -> None:
        try:
            while True:
                if not self.breaker.healthy:  # park until the poller's probe closes the circuit
                    self._parked[req.id] = req
                    while not self.breaker.healthy:
                        await asyncio.sleep(self.cfg.poll_s)
                    self._parked.pop(req.id, None)
                try:
                    rec = await self._send_with_retries(req)
                except Refused as e:
                    self.refused += 1
                    now = self.clock.now()
                    timer = StreamTimer(req.id, self.index, req.task, req.arrival_s, now, req.prompt_tokens)
                    self._finish(timer.record(now, status="rejected", reason=f"engine refused it: {e}"))
                    return
                except (Transient, CircuitOpen) as e:
                    self.failures += 1
                    log.warning("instance %d: request %s failed (%s); parked until %s recovers",
                                self.index, req.id, e, self.endpoint)
                    continue
                self._finish(rec)
                return
        except asyncio.CancelledError:
            self._parked.pop(req.id, None)
            raise

    def _finish(self, rec) -> None:
        self._tasks.pop(rec.id, None)
        if rec.status == "ok":
            self.completed += 1
        self._done.append(rec)

    async def _send_with_retries(self, req):
        attempts = 0
        async for attempt in AsyncRetrying(stop=stop_after_attempt(self.cfg.retries), reraise=True,
                                           wait=wait_random_exponential(multiplier=0.2, max=5.0),
                                           retry=retry_if_exception_type(Transient)):
            with attempt:
                attempts += 1
                if attempts > 1:
                    self.retried += 1
                try:
                    rec = await self._send(req)
                except Transient as e:
                    self.breaker.failure(self.clock.now(), str(e)[:300])
                    if not self.breaker.healthy:
                        raise CircuitOpen(f"circuit open: {e}") from None  # stop hammering a failing engine
                    raise
        self.breaker.success()
        return rec

    async def _send(self, req):
        body: dict = {"stream": True, "stream_options": {"include_usage": True}, "temperature": 0.0}
        if self._model:
            body["model"] = self._model
        if req.prompt_text:
            body["prompt"] = req.prompt_text
        elif self._pool is not None:
            body["prompt"] = prompts.token_prompt(req.id, req.prompt_tokens, self._pool, req.prefix_ids or ())
        else:
            body["prompt"] = prompts.text_prompt(req.id, req.prompt_tokens)
        if req.output_tokens is not None:
            body["max_tokens"] = int(req.output_tokens)
            body["ignore_eos"] = True
        async with self._sem:
            self._sending += 1
            try:
                return await self._stream(req, body)
            finally:
                self._sending -= 1

    async def _stream(self, req, body: dict):
        timer = StreamTimer(req.id, self.index, req.task, req.arrival_s, self.clock.now(), req.prompt_tokens)
        try:
            async with self._http.stream("POST", "/v1/completions", content=orjson.dumps(body),
                                         headers={"Content-Type": "application/json"}) as r:
                if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                    raise Refused(_error_text(r.status_code, await r.aread()))
                if r.status_code != 200:
                    raise Transient(_error_text(r.status_code, await r.aread()))
                done = False
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        continue
                    if "error" in chunk:
                        raise Refused(str(chunk["error"])[:1000])
                    for ch in chunk.get("choices") or ():
                        if ch.get("text"):
                            timer.token(self.clock.now())
                        if ch.get("finish_reason"):
                            timer.finish_reason = ch["finish_reason"]
                    if chunk.get("usage"):
                        timer.usage = chunk["usage"]
                    if isinstance(chunk.get("timings"), dict):
                        timer.timings = chunk["timings"]
                if not done and timer.finish_reason is None:
                    raise Transient("the stream ended before its last chunk")
        except httpx.HTTPError as e:
            raise Transient(f"{e.__class__.__name__}: {e}") from None
        if self.itl is not None:  # the worker's ITL histogram: every gap between streamed chunks
            for a, b in zip(timer.chunks, timer.chunks[1:]):
                self.itl.add(b - a)
        return timer.record(self.clock.now())

    # ------------------------------------------------------------ telemetry
    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.poll_s)
            try:
                await self._poll()
            except Exception as e:  # noqa: BLE001 - telemetry must never stop the worker
                log.warning("instance %d: telemetry poll failed: %s", self.index, e)

    async def _poll(self) -> None:
        now = self.clock.now()
        probing = not self.breaker.healthy
        if probing and not self.breaker.allow(now):
            return
        try:
            h = await self._http.get("/health", timeout=self.cfg.connect_timeout_s)
            ok = h.status_code == 200
            why = f"/health answered HTTP {h.status_code}"
        except httpx.HTTPError as e:
            ok, why = False, f"{e.__class__.__name__}: {e}"
        if not ok:
            self.breaker.failure(now, why[:300])
            return
        if probing:
            self.breaker.success()
            log.warning("instance %d: %s answers again; circuit closed", self.index, self.endpoint)
        tel = EngineTelemetry()
        try:
            m = await self._http.get("/metrics", timeout=self.cfg.connect_timeout_s)
            if m.status_code == 200:
                tel = from_metrics(parse_metrics(m.text))
        except (httpx.HTTPError, ValueError):
            pass
        if tel.engine == "llama.cpp":
            try:
                s = await self._http.get("/slots", timeout=self.cfg.connect_timeout_s)
                if s.status_code == 200 and isinstance(s.json(), list):
                    tel = merge_llamacpp_slots(tel, s.json())
            except (httpx.HTTPError, ValueError):
                pass
        self._telemetry, self._polled_at = tel, self.clock.now()


def _error_text(code: int, body: bytes) -> str:
    try:
        d = orjson.loads(body)
        msg = d.get("error", d)
        msg = msg.get("message", msg) if isinstance(msg, dict) else msg
    except (orjson.JSONDecodeError, AttributeError):
        msg = body[:500].decode(errors="replace")
    return f"HTTP {code}: {str(msg)[:1000]}"
