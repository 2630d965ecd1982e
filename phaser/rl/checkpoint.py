"""Policy checkpoints: versioned, atomic, checksummed, no pickle.

Layout (one directory per version, under a checkpoint root)::

    ROOT/
      v000001/
        weights.safetensors   flat {"layer.kernel": float32 array} (safetensors)
        metadata.json         format, variant, arch, feature spec, instance count,
                              profile, workload, config, training stats, checksum
      v000002/ …

* **Atomic**: a version is written into a hidden temp directory inside ROOT
  and renamed into place (``os.rename`` of a directory is atomic on POSIX), so a
  reader — the router hot-swapping policies — never sees half a checkpoint.
  An existing version is never overwritten.
* **Checksum**: ``sha256(weights bytes ‖ canonical JSON of the metadata without
  its "checksum" key)``; a flipped bit in either file is refused on load.
* **Compatibility** (``check_compatible``): the feature spec must match the
  stored version's definition (``FeatureSpec.from_stored``; v1 and v2 both load). A
  fixed-size ``mlp`` network is tied to its instance count; a ``shared``
  per-instance network is accepted at any instance count whose per-instance
  feature block matches (that is what sharing buys).

Reusable as is by the online trainer (writes versions) and the router (loads
the latest, or a pinned version).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from phaser.errors import PhaserError
from phaser.rl.features import FeatureSpec

FORMAT = 1
WEIGHTS = "weights.safetensors"
META = "metadata.json"
_VERSION_RE = re.compile(r"^v(\d{6})$")


@dataclass
class Checkpoint:
    path: Path
    version: int
    params: dict[str, np.ndarray]
    metadata: dict

    @property
    def variant(self) -> str:
        return self.metadata["variant"]

    @property
    def arch(self) -> str:
        return self.metadata["arch"]

    @property
    def n_instances(self) -> int:
        return int(self.metadata["n_instances"])

    @property
    def checksum(self) -> str:
        return self.metadata["checksum"]


def _canonical(meta: dict) -> bytes:
    return json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True,
                      separators=(",", ":"), allow_nan=False).encode()


def content_checksum(weights: bytes, meta: dict) -> str:
    h = hashlib.sha256()
    h.update(weights)
    h.update(_canonical(meta))
    return "sha256:" + h.hexdigest()


def versions(root: str | Path) -> list[int]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _VERSION_RE.match(p.name)))


def save_checkpoint(root: str | Path, params: dict[str, np.ndarray], metadata: dict,
                    version: int | None = None) -> Path:
    """Write a new version under ``root`` atomically; returns its directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if version is None:
        existing = versions(root)
        version = (existing[-1] + 1) if existing else 1
    final = root / f"v{version:06d}"
    if final.exists():
        raise PhaserError(f"checkpoint {final} already exists; versions are never overwritten")
    weights = st_save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(params.items())})
    meta = dict(metadata, format=FORMAT, version=version)
    meta["checksum"] = content_checksum(weights, meta)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for name, data in ((WEIGHTS, weights), (META, json.dumps(meta, indent=2, sort_keys=True).encode())):
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def resolve(path: str | Path) -> Path:
    """A version directory, or a root → its latest version."""
    p = Path(path)
    if (p / META).is_file():
        return p
    vs = versions(p)
    if not vs:
        raise PhaserError(f"no checkpoint at {p} (expected {META} or v000001/… directories)")
    return p / f"v{vs[-1]:06d}"


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify a checkpoint (version dir or root). PhaserError if missing, malformed or tampered."""
    d = resolve(path)
    try:
        weights = (d / WEIGHTS).read_bytes()
        meta = json.loads((d / META).read_text())
    except FileNotFoundError as e:
        raise PhaserError(f"checkpoint {d} is incomplete: {Path(e.filename).name} missing") from None
    except (OSError, ValueError) as e:
        raise PhaserError(f"checkpoint {d} is unreadable: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PhaserError(f"checkpoint {d}: unknown format {meta.get('format') if isinstance(meta, dict) else '?'}"
                          f" (this phaser reads format {FORMAT})")
    if meta.get("checksum") != content_checksum(weights, meta):
        raise PhaserError(f"checkpoint {d} failed its checksum: weights or metadata were modified")
    try:
        params = dict(st_load(weights))
    except Exception as e:  # safetensors raises its own error types
        raise PhaserError(f"checkpoint {d}: bad weights file ({e})") from None
    for key in ("variant", "arch", "n_instances", "feature_spec", "config"):
        if key not in meta:
            raise PhaserError(f"checkpoint {d}: metadata lacks {key!r}")
    return Checkpoint(d, int(meta.get("version", 0)), params, meta)


def check_compatible(ckpt: Checkpoint, n_instances: int) -> FeatureSpec:
    """Refuse a checkpoint that cannot drive ``n_instances`` with this phaser's
    features; returns the feature spec to encode with — the version the
    checkpoint was trained with (v1 checkpoints keep serving v1 features)."""
    stored = ckpt.metadata["feature_spec"]
    try:
        spec = FeatureSpec.from_stored(stored, n_instances)
    except ValueError as e:
        raise PhaserError(f"checkpoint {ckpt.path}: {e}; retrain it") from None
    if ckpt.arch == "shared":
        want = spec.per_instance_dict()
        if stored.get("per_instance_spec") != want:
            raise PhaserError(f"checkpoint {ckpt.path}: feature spec differs from this phaser's "
                              f"(stored version {stored.get('version')} does not match its definition here); retrain it")
        return spec
    if ckpt.n_instances != n_instances:
        raise PhaserError(f"checkpoint {ckpt.path} was trained for {ckpt.n_instances} instances, "
                          f"the router has {n_instances}; train one for {n_instances} or use --arch shared")
    if {k: v for k, v in stored.items() if k != "per_instance_spec"} != spec.to_dict():
        raise PhaserError(f"checkpoint {ckpt.path}: feature spec differs from this phaser's "
                          f"(stored version {stored.get('version')} does not match its definition here); retrain it")
    return spec


def spec_metadata(spec: FeatureSpec) -> dict:
    """The feature-spec entry a checkpoint stores (full spec + its instance-free part)."""
    return dict(spec.to_dict(), per_instance_spec=spec.per_instance_dict())
