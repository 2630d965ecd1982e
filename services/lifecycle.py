"""Process lifecycle shared by the services and ``phaser up``: clean stop on
SIGTERM/SIGINT, a readiness signal, and child process groups that are always
reaped.

Decisions:

* **Readiness** is a file: a service started with ``PHASER_READY_DIR`` set
  creates ``<dir>/<name>`` once its consumers are positioned. ``phaser up``
  waits for every child's file before it publishes load, so no request's
  router wait includes a service's start-up (imports, connections). A file is
  the simplest signal that works across processes without another port.
* **Children** run in their own session/process group
  (``start_new_session``): a terminal's Ctrl-C reaches only ``phaser up``, which
  then stops each group with SIGTERM, waits ``STOP_GRACE_S``, and SIGKILLs what
  is left, so nothing a child spawned survives either.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: seconds a child gets to flush and exit after SIGTERM before SIGKILL
STOP_GRACE_S = 5.0


def die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` wrapped so the child never outlives this process, even when this
    process is killed with SIGKILL: util-linux's ``setpriv --pdeathsig KILL``
    sets Linux's ``PR_SET_PDEATHSIG`` and execs the command (the setting
    survives exec). A subprocess ``preexec_fn`` would do the same but forces a
    fork of a multithreaded interpreter (JAX), which can deadlock. Where
    ``setpriv`` is missing the command runs unwrapped (then a SIGKILLed parent
    can orphan it; SIGTERM/Ctrl-C still stop it). Spawn such children from the
    main thread only: Linux sends the signal when the *thread* that forked the
    child exits (a child started from ``asyncio.to_thread`` dies with the
    pool's worker thread)."""
    import shutil

    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set ``stop`` so the running service flushes and exits cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
            pass


def mark_ready(name: str) -> None:
    """Create ``$PHASER_READY_DIR/<name>`` if the variable is set."""
    d = os.environ.get("PHASER_READY_DIR")
    if d:
        Path(d, name).touch()


@dataclass
class Children:
    """Child processes, each in its own process group; ``stop_all`` reaps them."""

    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], env: dict | None = None, stdout=None, stderr=None) -> subprocess.Popen:
        # die_with_parent: a parent killed by SIGKILL (or a closed terminal) leaves no orphan
        p = subprocess.Popen(die_with_parent(argv), start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})})
        self.procs[name] = p
        return p

    def dead(self) -> list[tuple[str, int]]:
        """Children that exited, with their exit codes."""
        return [(n, p.returncode) for n, p in self.procs.items() if p.poll() is not None]

    def peak_rss_mb(self) -> dict[str, float]:
        """Each running child's peak resident memory so far (``VmHWM``, MB; Linux)."""
        out = {}
        for name, p in self.procs.items():
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            out[name] = round(int(line.split()[1]) / 1024, 1)
            except (OSError, ValueError, IndexError):
                continue
        return out

    def stop_all(self, grace_s: float = STOP_GRACE_S, ordered: bool = False) -> None:
        """SIGTERM every child, SIGKILL what is left after ``grace_s``. ``ordered``: one
        at a time in start order (``phaser up`` starts router, workers, trainer,
        monitor), each given ``grace_s``, so the ones upstream stop first and
        nobody reports the ones it depends on as gone."""
        if ordered:
            for name in list(self.procs):
                self._stop_some({name: self.procs[name]}, grace_s)
            self.procs.clear()
            return
        self._stop_some(self.procs, grace_s)
        self.procs.clear()

    @staticmethod
    def _stop_some(procs: dict, grace_s: float) -> None:
        for p in procs.values():
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, p in procs.items():
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in {grace_s}s; killing it", file=sys.stderr)
            _signal_group(p, signal.SIGKILL)  # whatever the child left in its group
            p.wait()


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)  # pid == pgid: start_new_session
    except (ProcessLookupError, PermissionError):
        pass
