"""The checkpoint store: numbered policy versions plus one "current" pointer.

Layout of a store directory (shared by the trainer and the router, a named
volume in docker-compose)::

    STORE/
      v000001/      one checkpoint each, written by ``phaser.rl.checkpoint``
      v000002/      (the exact format of ``phaser train``: safetensors weights
      ...           + metadata JSON + sha256 checksum)
      current.json  {"version", "pinned", "reason", "updated_unix", "history"}
      state/v000002.npz   the trainer's learner state when it published v2
                          (replay sample, optimiser, pending decisions; the
                          newest STATE_KEEP kept), see ``save_state``

So a ``phaser train --out DIR`` directory *is* a store (without a pointer yet),
and ``phaser router --checkpoint STORE`` still resolves to a version.

Decisions:

* **Versions are immutable and atomic.** A version is written by
  ``phaser.rl.checkpoint.save_checkpoint`` under a temporary name and renamed
  into place, so a reader either sees a complete checkpoint or none; the store
  never edits one. Numbers are ``max(existing) + 1``: the trainer is the only
  writer of new versions (one trainer per store); a second writer racing for the
  same number gets a PhaserError from the rename, never a mixed directory.
* **The pointer is one small JSON file replaced atomically** (write temp,
  fsync, ``os.replace``). ``history`` lists the versions that were current
  before, newest last (capped at 100), which is what ``rollback`` pops.
* **Pinned** means an operator chose this version: routers serve it and ignore
  the trainer's new publications until someone promotes or unpins.
* The store is the only module here that touches files; the lifecycle
  decisions (when to promote, when to roll back) live in ``guard.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from phaser.errors import PhaserError
from phaser.rl import checkpoint as ckpt

HISTORY_CAP = 100
#: learner-state files kept (newest first); older ones are deleted on save
STATE_KEEP = 2


@dataclass(frozen=True)
class Pointer:
    version: int | None = None
    pinned: bool = False
    reason: str = ""
    updated_unix: float = 0.0
    history: tuple[int, ...] = ()

    def to_json(self) -> dict:
        return {"version": self.version, "pinned": self.pinned, "reason": self.reason,
                "updated_unix": self.updated_unix, "history": list(self.history)}


@dataclass
class CheckpointStore:
    root: Path
    wall: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise PhaserError(f"checkpoint store {self.root} is not a directory")

    # ---------------------------------------------------------------- paths
    @property
    def pointer_path(self) -> Path:
        return self.root / "current.json"

    def path_of(self, version: int) -> Path:
        return self.root / f"v{version:06d}"

    # ------------------------------------------------------------- versions
    def versions(self) -> list[int]:
        return ckpt.versions(self.root)

    def publish(self, params: dict, metadata: dict) -> tuple[int, Path, str]:
        """Write the next version; returns (version, directory, checksum)."""
        path = ckpt.save_checkpoint(self.root, params, metadata)
        meta = json.loads((path / ckpt.META).read_text())
        return int(meta["version"]), path, str(meta["checksum"])

    def import_checkpoint(self, path: str | Path, reason: str) -> tuple[int, Path]:
        """Copy a verified checkpoint (e.g. from ``phaser train``) in as the next
        version and make it current: the starting point of an online run."""
        c = ckpt.load_checkpoint(path)
        meta = {k: v for k, v in c.metadata.items() if k not in ("checksum", "version", "format")}
        meta["imported_from"] = str(c.path)
        version, vpath, _ = self.publish(c.params, meta)
        self.promote(version, reason)
        return version, vpath

    def load(self, version: int) -> "ckpt.Checkpoint":
        """Load and verify one version (PhaserError if missing or tampered)."""
        return ckpt.load_checkpoint(self.require(version))

    def require(self, version: int) -> Path:
        path = self.path_of(version)
        if not path.is_dir():
            known = ", ".join(f"v{v}" for v in self.versions()[-10:]) or "none"
            raise PhaserError(f"no version v{version} in {self.root} (latest: {known})")
        return path

    def usable_current(self, load: Callable[[int], object] | None = None,
                       newest_first: bool = False) -> tuple[int | None, object | None, list[str]]:
        """The newest usable version a service should start from: the current
        one, else the previously current ones newest first (a corrupt or
        missing checkpoint is skipped), else none. With an unreadable pointer,
        every stored version is tried newest first. ``load(version)`` loads and
        checks one (default: ``self.load``); whatever it raises (PhaserError,
        OSError, ValueError) makes that version unusable. Returns (version,
        loaded, notes): one line per version skipped and why, for the service
        to print so an operator knows it did not start from the pointer.
        ``newest_first``: try every stored version newest first instead (a
        restarted trainer resumes its own newest version, whatever is current)."""
        load = load or self.load
        notes: list[str] = []
        candidates = self._candidates(newest_first, notes)
        tried: set[int] = set()
        for v in candidates:
            if v in tried:
                continue
            tried.add(v)
            try:
                return v, load(v), notes
            except (PhaserError, OSError, ValueError, KeyError) as e:
                notes.append(f"version v{v} in {self.root} is unusable ({e.__class__.__name__}: {e}); skipping it")
        return None, None, notes

    def _candidates(self, newest_first: bool, notes: list[str]) -> list[int]:
        """Versions to try, best first: every stored one newest first (``newest_first``,
        the trainer's own lineage), else the current one and then its history."""
        if not newest_first:
            try:
                ptr = self.pointer()
                return ([ptr.version] if ptr.version is not None else []) + list(reversed(ptr.history))
            except PhaserError as e:
                notes.append(f"{e}; trying the stored versions newest first")
        return sorted(self.versions(), reverse=True)

    # ---------------------------------------------------------- learner state
    def state_path(self, version: int) -> Path:
        return self.root / "state" / f"v{version:06d}.npz"

    def save_state(self, version: int, arrays: dict, checksum: str) -> Path:
        """Write the trainer's state for ``version`` (numpy arrays only, no pickles),
        atomically, tied to the version's ``checksum`` so a state file is never
        applied to other weights; keeps the newest ``STATE_KEEP`` files."""
        import numpy as np

        d = self.root / "state"
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".npz", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays, __checksum__=np.frombuffer(checksum.encode(), np.uint8))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path(version))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in sorted(d.glob("v*.npz"))[:-STATE_KEEP]:
            old.unlink(missing_ok=True)
        return self.state_path(version)

    def load_state(self, version: int, checksum: str) -> dict:
        """The state saved with ``version``; PhaserError if missing, unreadable or
        saved with other weights (the caller then starts that part afresh)."""
        import zipfile

        import numpy as np

        p = self.state_path(version)
        if not p.exists():
            raise PhaserError(f"no learner state for v{version} in {p.parent}")
        try:
            with np.load(p, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise PhaserError(f"unreadable learner state {p}: {e.__class__.__name__}: {e}") from None
        if bytes(out.pop("__checksum__", np.zeros(0, np.uint8))).decode(errors="replace") != checksum:
            raise PhaserError(f"learner state {p} was saved with other weights than v{version}")
        return out

    # -------------------------------------------------------------- pointer
    def pointer(self) -> Pointer:
        p = self.pointer_path
        if not p.exists():
            return Pointer()
        try:
            d = json.loads(p.read_text())
            return Pointer(version=None if d.get("version") is None else int(d["version"]),
                           pinned=bool(d.get("pinned", False)), reason=str(d.get("reason", "")),
                           updated_unix=float(d.get("updated_unix", 0.0)),
                           history=tuple(int(v) for v in d.get("history", ())))
        except (ValueError, TypeError, KeyError) as e:
            raise PhaserError(f"unreadable pointer {p}: {e}") from None

    def _write_pointer(self, ptr: Pointer) -> Pointer:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".current-", suffix=".json", dir=self.root)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(ptr.to_json(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.pointer_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ptr

    def promote(self, version: int, reason: str, pin: bool = False) -> Pointer:
        """Make ``version`` current (pinned if ``pin``); the old one goes on the history."""
        self.require(version)
        old = self.pointer()
        history = old.history
        if old.version is not None and old.version != version:
            history = (history + (old.version,))[-HISTORY_CAP:]
        return self._write_pointer(Pointer(version, pin, reason, self.wall(), history))

    def unpin(self, reason: str = "unpinned") -> Pointer:
        old = self.pointer()
        return self._write_pointer(Pointer(old.version, False, reason, self.wall(), old.history))

    def clear(self, reason: str) -> Pointer:
        """No current version: routers serve their fallback policy (a rollback past
        the first stored version). The old current goes on the history."""
        old = self.pointer()
        history = old.history + ((old.version,) if old.version is not None else ())
        return self._write_pointer(Pointer(None, old.pinned, reason, self.wall(), history[-HISTORY_CAP:]))

    def rollback(self, reason: str, to: int | None = None) -> tuple[int | None, Pointer]:
        """Withdraw the current version: back to ``to`` or the previous current.
        Returns (withdrawn version, new pointer). The result is pinned only if
        the withdrawn pointer was (an operator's pin survives a rollback)."""
        old = self.pointer()
        if old.version is None:
            raise PhaserError(f"nothing to roll back in {self.root}: no current version")
        history = list(old.history)
        if to is None:
            while history and history[-1] == old.version:
                history.pop()
            if not history:
                raise PhaserError(f"cannot roll back v{old.version}: no earlier version was ever current")
            to = history.pop()
        else:
            self.require(to)
        new = Pointer(to, old.pinned, reason, self.wall(), tuple(history))
        return old.version, self._write_pointer(new)
