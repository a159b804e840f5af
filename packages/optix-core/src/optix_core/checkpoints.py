"""CheckpointRegistry: atomic, verified snapshots of an agent and the loop.

A snapshot is a directory holding the agent's own files (under ``agent/``)
and ``manifest.json``: scores, hyperparameters, the loop's state, package
versions, the sha256 of every file, and ``manifest_sha256``, the sha256 of
the manifest's own canonical JSON without that field, so an edited score or
hyperparameter is caught like an edited weight. It is written into a
temporary directory, fsynced and renamed into place, so a crash mid-write
leaves the previous snapshots untouched. A snapshot that does not match its
hashes is refused, and restoring falls back to the next good one.

Two kinds live side by side: ``best-*`` snapshots, each policy the loop
chose as its best, the newest (the current best) first, ``max_snapshots`` of
them kept; and ``latest-*``, the loop's two most recent states (two, so a
torn or corrupt newest one still leaves one to resume from). The loop's
selection policy decides what "best" means (``optix_core.selection``); the
registry keeps its choices in order rather than ranking them again by score,
so a tie that went to a later policy is never undone here.

One process writes a directory at a time: the writer calls ``acquire()``
(or uses the registry as a context manager), which takes an ``flock`` on
``.lock`` and only then removes what an interrupted write left behind.
Readers (``optix eval`` on a run that is still training) never acquire and
never delete anything, and they tolerate snapshots that the writer prunes
while they read.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import numpy as np

from optix_core.agent import BaseAgent
from optix_core.types import EvalMetrics, HyperparamSet, PolicySnapshot, finite_or_none

log = logging.getLogger("optix")

FORMAT = "optix-checkpoint/1"
MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest_sha256"
AGENT_DIR = "agent"
LOCK = ".lock"
KINDS = ("best", "latest")
LATEST_KEPT = 2
_SNAPSHOT_NAME = re.compile(r"(best|latest)-(\d+)")


class CheckpointError(RuntimeError):
    """A checkpoint is missing or cannot be used."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's manifest or files do not match their hashes."""


class CheckpointLockedError(CheckpointError):
    """Another process holds the directory's writer lock."""


class CheckpointRegistry:
    def __init__(self, directory: str | os.PathLike[str], max_snapshots: int = 10) -> None:
        if max_snapshots < 1:
            raise ValueError(f"max_snapshots must be >= 1, got {max_snapshots}")
        self.directory = Path(directory)
        self.max_snapshots = max_snapshots
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock: IO[str] | None = None

    # ---- the writer lock -----------------------------------------------

    def acquire(self) -> None:
        """Become the directory's one writer, then clear interrupted writes.

        The lock is an ``flock``, so the kernel drops it when the holder
        dies, even by SIGKILL, and ``--resume`` can take over. Cleaning
        ``.tmp-*`` only under the lock is what keeps a reader from deleting
        the snapshot a live trainer is writing. Acquiring twice is a no-op.
        """
        if self._lock is not None:
            return
        path = self.directory / LOCK
        handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise CheckpointLockedError(
                f"{self.directory} is in use by another optix process (pid {holder})"
            ) from None
        except BaseException:
            handle.close()
            raise
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle
        for leftover in self.directory.glob(".tmp-*"):  # a write its writer never finished
            shutil.rmtree(leftover, ignore_errors=True)

    def release(self) -> None:
        """Give the writer lock back; safe to call when it is not held."""
        handle, self._lock = self._lock, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

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
        durable: bool = True,
    ) -> PolicySnapshot:
        """Write a snapshot atomically; keep the newest N ``best``, and two ``latest``.

        ``durable=False`` skips the fsyncs: the rename is still atomic, so a
        killed process leaves either the whole snapshot or none, but a machine
        that loses power may lose it. The newest durable ``latest`` is kept
        beside the two newest, so there is always one to fall back to.
        Works without ``acquire()`` for simple single-process use; a process
        that shares the directory with readers or resumes should acquire.
        """
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
                "eval_metrics": _finite(eval_metrics.to_dict()),
                "hyperparams": hyperparams.to_dict(),
                "agent_class": f"{type(agent).__module__}:{type(agent).__qualname__}",
                "loop_state": _finite(loop_state or {}),
                "extra": _finite(extra or {}),
                "versions": dict(_versions()),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": {rel: _sha256(tmp / rel) for rel in _files(tmp)},
                "durable": durable,
            }
            manifest = _sealed(manifest)
            _write_json(tmp / MANIFEST, manifest)
            if durable:
                _fsync_tree(tmp)
            final = self.directory / snapshot_id
            os.rename(tmp, final)
            if durable:
                _fsync_dir(self.directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(kind)
        return _snapshot(final, manifest)

    def _next_sequence(self) -> int:
        numbers = [_sequence(p) for p in self._dirs()]
        return max(numbers, default=0) + 1

    def _prune(self, kind: str) -> None:
        keep = LATEST_KEPT if kind == "latest" else self.max_snapshots
        ranked = self._ranked(kind)
        durable = next((path for path, m in ranked if m.get("durable", True)), None)
        for path, _ in ranked[keep:]:
            if path != durable:
                shutil.rmtree(path, ignore_errors=True)

    # ---- reading -------------------------------------------------------

    def _dirs(self) -> list[Path]:
        """Snapshot directories; the writer may be pruning while we list."""
        try:
            entries = list(self.directory.iterdir())
        except FileNotFoundError:  # the whole directory went away
            return []
        return [
            p
            for p in entries
            if _SNAPSHOT_NAME.fullmatch(p.name) and p.is_dir() and (p / MANIFEST).exists()
        ]

    def _ranked(self, kind: str) -> list[tuple[Path, dict[str, Any]]]:
        """Snapshots of ``kind``, newest first."""
        entries = []
        for path in self._dirs():
            if not path.name.startswith(kind + "-"):
                continue
            try:
                manifest = _read_json(path / MANIFEST)
            except (OSError, ValueError):  # pruned or torn: restore() skips it
                manifest = {}
            if not isinstance(manifest, dict):
                manifest = {}
            entries.append((path, manifest))

        return sorted(entries, key=lambda entry: -_sequence(entry[0]))

    def snapshots(self, kind: str = "best") -> list[PolicySnapshot]:
        """Snapshots on disk, newest first; unverified.

        One that vanished (pruned by the writer) or cannot be read is left out.
        """
        found = []
        for path, manifest in self._ranked(kind):
            try:
                found.append(_snapshot(path, manifest))
            except (KeyError, TypeError, ValueError, AttributeError):
                log.debug("checkpoint %s left out: unreadable manifest", path.name)
        return found

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
        if not isinstance(manifest, dict):
            raise CorruptCheckpointError(f"{path / MANIFEST} is not a JSON object")
        if manifest.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} has format {manifest.get('format')!r}, expected {FORMAT}"
            )
        if MANIFEST_HASH not in manifest:
            raise CorruptCheckpointError(f"{path / MANIFEST} has no {MANIFEST_HASH}; refused")
        try:
            actual = _manifest_sha256(manifest)
        except ValueError:  # NaN or Infinity written in by hand: never ours
            actual = None
        if actual != manifest[MANIFEST_HASH]:
            raise CorruptCheckpointError(
                f"{path / MANIFEST} does not match its {MANIFEST_HASH} (edited?); refused"
            )
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise CorruptCheckpointError(f"{path / MANIFEST} lists no files; refused")
        for rel, expected in files.items():
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
        """Load the newest good snapshot of ``kind``, skipping corrupt ones.

        A snapshot the writer prunes between our listing and our reading
        (an ``OSError`` mid-verify or mid-load) is skipped the same way.
        """
        for path, _ in self._ranked(kind):
            try:
                manifest = self.load(agent, path)
            except CheckpointError as exc:
                log.warning("checkpoint %s skipped: %s", path.name, exc)
                continue
            except OSError as exc:
                log.warning("checkpoint %s skipped: it went away while read (%s)", path.name, exc)
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


def _sequence(path: Path) -> int:
    return int(path.name.split("-")[1])


def _finite(value: Any) -> Any:
    """JSON has no inf or nan: store them as null, however deep they sit."""
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float):
        return finite_or_none(value)
    return value


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, allow_nan=False, separators=(",", ":"))


def _manifest_sha256(manifest: dict[str, Any]) -> str:
    """The sha256 of the manifest's canonical JSON, without its own hash."""
    rest = {k: v for k, v in manifest.items() if k != MANIFEST_HASH}
    return hashlib.sha256(_canonical(rest).encode()).hexdigest()


def _sealed(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as it will read back, with its own hash added.

    The JSON round trip first turns tuples into lists and non-string keys
    into strings, so the hash ``verify()`` recomputes from the file is the
    one computed here.
    """
    plain = json.loads(json.dumps(manifest, allow_nan=False))
    plain[MANIFEST_HASH] = _manifest_sha256(plain)
    return plain


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
