"""CheckpointRegistry: atomic, verified snapshots of an agent and the loop.

A snapshot is a directory holding the agent's own files (under ``agent/``)
and ``manifest.json``: scores, hyperparameters, the loop's state, package
versions and the sha256 of every file. It is written into a temporary
directory, fsynced and renamed into place, so a crash mid-write leaves the
previous snapshots untouched. A snapshot whose files do not match their
hashes is refused, and restoring falls back to the next good one.

Two kinds live side by side: ``best-*`` snapshots, the ``max_snapshots``
highest-scoring ones, and ``latest-*``, the loop's most recent state, which
``--resume`` continues from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from optix_core.agent import BaseAgent
from optix_core.types import EvalMetrics, HyperparamSet, PolicySnapshot, finite_or_none

log = logging.getLogger("optix")

FORMAT = "optix-checkpoint/1"
MANIFEST = "manifest.json"
AGENT_DIR = "agent"
KINDS = ("best", "latest")


class CheckpointError(RuntimeError):
    """A checkpoint is missing or cannot be used."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's files do not match the hashes in its manifest."""


class CheckpointRegistry:
    def __init__(self, directory: str | os.PathLike[str], max_snapshots: int = 10) -> None:
        if max_snapshots < 1:
            raise ValueError(f"max_snapshots must be >= 1, got {max_snapshots}")
        self.directory = Path(directory)
        self.max_snapshots = max_snapshots
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob(".tmp-*"):  # an interrupted write
            shutil.rmtree(leftover, ignore_errors=True)

    # ---- writing -------------------------------------------------------

    def save(
        self,
        agent: BaseAgent,
        *,
        kind: str,
        episode_id: int,
        eval_metrics: EvalMetrics,
        score: float,
        hyperparams: HyperparamSet,
        loop_state: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> PolicySnapshot:
        """Write a snapshot atomically; keep the best N, and one ``latest``."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        snapshot_id = f"{kind}-{self._next_sequence():06d}"
        tmp = self.directory / f".tmp-{snapshot_id}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            agent.save_weights(str(tmp / AGENT_DIR))
            manifest = {
                "format": FORMAT,
                "snapshot_id": snapshot_id,
                "kind": kind,
                "episode_id": episode_id,
                "score": finite_or_none(score),
                "eval_metrics": eval_metrics.to_dict(),
                "hyperparams": hyperparams.to_dict(),
                "agent_class": f"{type(agent).__module__}:{type(agent).__qualname__}",
                "loop_state": loop_state or {},
                "extra": extra or {},
                "versions": dict(_versions()),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {rel: _sha256(tmp / rel) for rel in _files(tmp)},
            }
            _write_json(tmp / MANIFEST, manifest)
            _fsync_tree(tmp)
            final = self.directory / snapshot_id
            os.rename(tmp, final)
            _fsync_dir(self.directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(kind)
        return _snapshot(final, manifest)

    def _next_sequence(self) -> int:
        numbers = [int(p.name.split("-")[1]) for p in self._dirs()]
        return max(numbers, default=0) + 1

    def _prune(self, kind: str) -> None:
        keep = 1 if kind == "latest" else self.max_snapshots
        ranked = self._ranked(kind)
        for path, _ in ranked[keep:]:
            shutil.rmtree(path, ignore_errors=True)

    # ---- reading -------------------------------------------------------

    def _dirs(self) -> list[Path]:
        return [
            p
            for p in self.directory.iterdir()
            if p.is_dir() and p.name.split("-")[0] in KINDS and (p / MANIFEST).exists()
        ]

    def _ranked(self, kind: str) -> list[tuple[Path, dict[str, Any]]]:
        """Snapshots of ``kind``, best first (``latest``: newest first)."""
        entries = []
        for path in self._dirs():
            if not path.name.startswith(kind + "-"):
                continue
            try:
                manifest = _read_json(path / MANIFEST)
            except (OSError, ValueError):
                manifest = {"score": None}
            entries.append((path, manifest))

        def order(entry: tuple[Path, dict[str, Any]]) -> tuple[float, int]:
            path, manifest = entry
            sequence = int(path.name.split("-")[1])
            if kind == "latest":
                return (0.0, -sequence)
            score = manifest.get("score")
            return (-(score if score is not None else float("-inf")), -sequence)

        return sorted(entries, key=order)

    def snapshots(self, kind: str = "best") -> list[PolicySnapshot]:
        """Snapshots on disk, best (or newest) first; unverified."""
        return [_snapshot(path, m) for path, m in self._ranked(kind) if "snapshot_id" in m]

    def has_snapshots(self) -> bool:
        return bool(self._dirs())

    def verify(self, snapshot_path: str | os.PathLike[str]) -> dict[str, Any]:
        """Check a snapshot's files against its manifest; return the manifest."""
        path = Path(snapshot_path)
        if not (path / MANIFEST).exists():
            raise CheckpointError(f"{path} is not a checkpoint: it has no {MANIFEST}")
        try:
            manifest = _read_json(path / MANIFEST)
        except ValueError as exc:
            raise CorruptCheckpointError(f"{path / MANIFEST} is not valid JSON: {exc}") from None
        if manifest.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} has format {manifest.get('format')!r}, expected {FORMAT}"
            )
        for rel, expected in manifest.get("files", {}).items():
            file = path / rel
            if not file.is_file():
                raise CorruptCheckpointError(f"{path}: {rel} is missing")
            if _sha256(file) != expected:
                raise CorruptCheckpointError(f"{path}: {rel} does not match its sha256; refused")
        return manifest

    def load(self, agent: BaseAgent, snapshot_path: str | os.PathLike[str]) -> dict[str, Any]:
        """Verify a snapshot and load its weights into ``agent``."""
        manifest = self.verify(snapshot_path)
        agent.load_weights(str(Path(snapshot_path) / AGENT_DIR))
        return manifest

    def restore(self, agent: BaseAgent, kind: str = "best") -> dict[str, Any] | None:
        """Load the best good snapshot of ``kind``, skipping corrupt ones."""
        for path, _ in self._ranked(kind):
            try:
                manifest = self.load(agent, path)
            except CheckpointError as exc:
                log.warning("checkpoint %s skipped: %s", path.name, exc)
                continue
            manifest["path"] = str(path)
            return manifest
        return None


def _snapshot(path: Path, manifest: dict[str, Any]) -> PolicySnapshot:
    score = manifest.get("score")
    return PolicySnapshot(
        snapshot_id=manifest["snapshot_id"],
        episode_id=int(manifest["episode_id"]),
        eval_metrics=EvalMetrics.from_dict(manifest["eval_metrics"]),
        hyperparams=HyperparamSet.from_dict(manifest["hyperparams"]),
        path=str(path),
        score=float("-inf") if score is None else float(score),
    )


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            _fsync_dir(path)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _versions() -> dict[str, str]:
    versions = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.startswith("optix") or name in ("numpy", "gymnasium", "torch", "tensorflow", "jax"):
            versions[name] = dist.version
    return versions
