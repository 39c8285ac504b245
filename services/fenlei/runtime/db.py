"""A service's database: SQLite in WAL mode, every commit synced (synchronous=FULL),
foreign keys on, the schema's version in PRAGMA user_version and the service's migrations to it.

One process writes it (the service that owns it), one transaction at a time: `transaction()`
takes this process's writer lock and BEGIN IMMEDIATE (SQLite's write lock from the start, so
a transaction never fails half-way because another connection writes). Readers never wait
on the writer: WAL gives each `read()` a snapshot of the last commit.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from fenlei.errors import FailedPrecondition

log = logging.getLogger("fenlei.runtime.db")

# How long a connection waits for another process's write lock (only at start, when a
# restarted service meets the one it replaces) before it fails.
BUSY_SECONDS = 30.0

# A service's schema: step i moves it from version i to i + 1, in one transaction with the
# version bump.
Migrations = Sequence[Sequence[str]]


class Database:
    """The SQLite database at `path` of `what` (its name in messages), created and migrated
    to the last of `migrations` when opened."""

    def __init__(self, path: Path, migrations: Migrations, what: str = "registry") -> None:
        self.path = Path(path)
        self.migrations = migrations
        self.what = what
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = threading.RLock()
        self._owner: int | None = None  # the thread holding the writer lock
        self._holds = 0  # how often it holds it (transactions inside its hooks)
        self._depth = 0  # transactions and savepoints open
        self._after_commit: dict[object, Callable[[], object]] = {}
        self._readers = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._connection = self._connect()
        self.migrated_from = self._migrate()

    def _connect(self) -> sqlite3.Connection:
        # Autocommit (isolation_level=None): transactions are begun here, explicitly. A
        # connection is used by one thread at a time (the writer's under its lock).
        connection = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row  # by position and by column name
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _migrate(self) -> int:
        """Runs the steps the database lacks; returns the version it had."""
        schema_version = len(self.migrations)
        found = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if found > schema_version:
            raise FailedPrecondition(
                f"the {self.what} database {self.path} has schema version {found}, newer than this fenlei's {schema_version}: "
                "run the fenlei that wrote it (or a newer one)"
            )
        for step in range(found, schema_version):
            with self.transaction() as conn:
                # Another process may have run this step while this one waited for the lock.
                if conn.execute("PRAGMA user_version").fetchone()[0] != step:
                    continue
                for statement in self.migrations[step]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step + 1}")
            log.info(f"{self.what} database migrated", extra={"fields": {"path": str(self.path), "schema_version": step + 1}})
        return found

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with self._writer:
            self._holds += 1
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._holds -= 1
                if not self._holds:
                    self._owner = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed when the block ends and rolled back when it raises.
        Inside another transaction of the same thread it is a savepoint of that one (so a step
        that refuses undoes only itself). What `after_commit` was given runs once the
        outermost transaction has committed, still under the writer lock: views are written
        in the order of the commits they show, each from the state its commit left."""
        with self._writing():
            conn = self._connection
            outermost = self._depth == 0
            if outermost and conn.in_transaction:
                conn.execute("COMMIT")  # the snapshot of a read() this thread is in: it writes now
            conn.execute("BEGIN IMMEDIATE" if outermost else "SAVEPOINT nested")
            self._depth += 1
            pending = dict(self._after_commit)
            try:
                yield conn
            except BaseException:
                self._depth -= 1
                if not outermost:
                    conn.execute("ROLLBACK TO nested")
                    conn.execute("RELEASE nested")
                    self._after_commit = pending
                elif conn.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
                    conn.execute("ROLLBACK")
                if outermost:
                    self._after_commit = {}
                raise
            self._depth -= 1
            if not outermost:
                conn.execute("RELEASE nested")
                return
            hooks, self._after_commit = self._after_commit, {}
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            failures = []
            for hook in hooks.values():
                try:
                    hook()
                except Exception as error:  # noqa: BLE001 - every view gets its chance; the first failure is raised
                    log.exception("writing a view after a commit failed")
                    failures.append(error)
            if failures:
                raise failures[0]

    def after_commit(self, key: object, hook: Callable[[], object]) -> None:
        """Runs hook once the current transaction commits (not at all when it rolls back);
        one hook per key, however often it was asked for."""
        if not self.in_transaction:
            raise RuntimeError("after_commit outside a transaction of this thread")
        self._after_commit[key] = hook

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside a transaction."""
        return self._owner == threading.get_ident() and self._depth > 0

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot of the last commit, for reading. In the thread that holds the
        writer lock (in a transaction, or in its after-commit hooks), the writer's connection:
        it sees its own changes. A read inside a read shares its snapshot."""
        conn = self._connection if self._owner == threading.get_ident() else self._reader()
        began = not conn.in_transaction
        if began:
            conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if began and conn.in_transaction:
                conn.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        """The calling thread's connection for reading."""
        conn: sqlite3.Connection | None = getattr(self._readers, "connection", None)
        if conn is None:
            conn = self._readers.connection = self._connect()
        return conn

    def close(self) -> None:
        with self._writer, self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
