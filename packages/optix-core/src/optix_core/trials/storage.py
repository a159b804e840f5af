"""Where a sweep's Optuna study lives, chosen and checked before any trial starts.

``storage`` is one of

    None                      one worker: an SQLite file, ``<run_dir>/study.db``;
                              several: a journal file, ``<run_dir>/study.journal``
    "sqlite:///path/study.db" an SQLite file; one worker only
    "postgresql://user@host:port/db"
                              a PostgreSQL server (driver psycopg, from the ``tune``
                              extra: ``postgresql://`` means ``postgresql+psycopg://``);
                              any worker count, on any number of machines
    "mysql+pymysql://..."     any other SQLAlchemy database URL, likewise
    "path/to/study.journal"   anything without ``://``: Optuna's journal file, for
                              workers on one machine (or on a shared file system
                              whose locks work, such as NFS)

SQLite is never shared between workers: it locks the whole file for every
write, and concurrent writers time out and lose trials. Database storages
record a heartbeat for every running trial; a trial whose worker died (a
killed process, a lost machine) stops beating, and after ``grace_period``
seconds the next worker that starts a trial marks it FAIL
(``optuna.storages.fail_stale_trials``) so the sweep goes on without it. The
journal file has no heartbeat in Optuna; TrialOrchestrator fails the trials
of its own worker processes when they die, but a journal shared by several
machines cannot notice one of them vanishing, so use a database for that.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

SQLITE_FILE = "study.db"
JOURNAL_FILE = "study.journal"
CONNECT_TIMEOUT_S = 10
ALTERNATIVES = (
    "a PostgreSQL server (postgresql+psycopg://user@host:port/db) or a journal file "
    f"(a path such as runs/sweep/{JOURNAL_FILE}, or no storage at all)"
)


class StorageError(ValueError):
    """A tune storage that cannot be used: malformed, unreachable, or unfit for the workers."""


@dataclass(frozen=True)
class StorageSpec:
    """A storage as a plain value, so every worker process can open its own connection."""

    kind: str  # "rdb" or "journal"
    location: str  # a database URL or a journal file path
    heartbeat_interval: int
    grace_period: int

    @property
    def heartbeat(self) -> bool:
        """Whether dead workers' trials are found by their missing heartbeat."""
        return self.kind == "rdb"

    @property
    def display(self) -> str:
        """The location without a password, for messages and reports."""
        if self.kind == "journal":
            return self.location
        from sqlalchemy.engine import make_url

        return make_url(self.location).render_as_string(hide_password=True)

    def open(self) -> BaseStorage:
        """Connect; raises ``StorageError`` with the reason when that fails."""
        if self.kind == "journal":  # without SQLAlchemy, which takes a second to import
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            try:
                return JournalStorage(JournalFileBackend(self.location))
            except OSError as exc:
                raise StorageError(f"cannot open journal file {self.location}: {exc}") from None
        import optuna
        import sqlalchemy.exc

        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    self.location,
                    engine_kwargs=_engine_kwargs(self.location),
                    heartbeat_interval=self.heartbeat_interval,
                    grace_period=self.grace_period,
                )
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(
                f"cannot open tune storage {self.display}: {reason}. Check that the server "
                "is running and reachable and that the URL is right "
                "(postgresql+psycopg://user@host:port/db)"
            ) from None


def resolve_storage(
    storage: str | os.PathLike[str] | None,
    n_workers: int,
    run_dir: Path,
    heartbeat_interval: int = 10,
    grace_period: int | None = None,
) -> StorageSpec:
    """Choose the storage for ``n_workers`` workers; nothing is opened yet.

    ``grace_period`` (seconds without a heartbeat before a running trial is
    failed) defaults to three heartbeat intervals.
    """
    if heartbeat_interval < 1:
        raise StorageError(f"heartbeat_interval must be >= 1 second, got {heartbeat_interval}")
    grace = 3 * heartbeat_interval if grace_period is None else grace_period
    if grace <= heartbeat_interval:
        raise StorageError(
            f"grace_period ({grace} s) must be longer than heartbeat_interval "
            f"({heartbeat_interval} s), or every slow heartbeat fails a live trial"
        )

    def spec(kind: str, location: str) -> StorageSpec:
        return StorageSpec(kind, location, heartbeat_interval, grace)

    if storage is None:
        if n_workers == 1:
            return spec("rdb", f"sqlite:///{(run_dir / SQLITE_FILE).resolve()}")
        return spec("journal", str((run_dir / JOURNAL_FILE).resolve()))
    location = os.fspath(storage)
    if "://" not in location:
        path = Path(location).expanduser()
        if not path.parent.is_dir():
            raise StorageError(
                f"journal file {location}: directory {path.parent} does not exist; "
                "a storage without '://' is a journal file path"
            )
        return spec("journal", str(path.resolve()))
    url = _database_url(location)
    if url.startswith("sqlite") and n_workers > 1:
        raise StorageError(
            f"{n_workers} workers cannot share an SQLite file ({location}): SQLite locks the "
            f"whole file on every write and concurrent workers lose trials; use {ALTERNATIVES}"
        )
    return spec("rdb", url)


def _database_url(location: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(location)
    except ArgumentError as exc:
        raise StorageError(f"tune storage {location!r} is not a database URL: {exc}") from None
    if url.drivername in ("postgres", "postgresql"):
        # psycopg (3) is the driver the tune extra installs; SQLAlchemy's default is psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _engine_kwargs(url: str) -> dict:
    if url.startswith("postgresql"):
        # Fail in seconds, not minutes, on an unreachable server; survive idle connections
        # dropped by the server during a long trial.
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}
