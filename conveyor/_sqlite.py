"""SQLite connections with the sqlite-vec extension loaded.

Python builds without loadable-extension support (pyenv's, some distros')
fall back to ``pysqlite3`` (the ``pysqlite3-binary`` wheel), which has it.
"""

from __future__ import annotations

import importlib
import sqlite3 as _stdlib_sqlite3
from pathlib import Path
from types import ModuleType

from .exceptions import ConfigurationError


def _driver() -> ModuleType:
    if hasattr(_stdlib_sqlite3.Connection, "enable_load_extension"):
        return _stdlib_sqlite3
    try:
        return importlib.import_module("pysqlite3.dbapi2")
    except ImportError as exc:  # pragma: no cover - depends on the platform
        raise ConfigurationError(
            "this Python's sqlite3 cannot load extensions (needed for sqlite-vec); "
            "install pysqlite3-binary: pip install pysqlite3-binary"
        ) from exc


sqlite3: ModuleType = _driver()
Connection = _stdlib_sqlite3.Connection
Row = _stdlib_sqlite3.Row
"""A connection and a row of whichever driver is in use (pysqlite3's have the same interface)."""
IntegrityError = sqlite3.IntegrityError
OperationalError = sqlite3.OperationalError


def connect(path: str | Path, *, vec: bool = True, timeout: float = 30.0) -> Connection:
    """Open ``path`` in WAL mode with a busy timeout; load sqlite-vec if ``vec``.

    Connections are in autocommit mode: use ``BEGIN IMMEDIATE`` / ``COMMIT``
    (see :func:`transaction`) for multi-statement writes.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn: Connection = sqlite3.connect(
        str(path), timeout=timeout, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    if str(path) != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    if vec:
        import sqlite_vec

        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
    return conn


def table_exists(conn: Connection, name: str) -> bool:
    """Whether ``name`` exists: schema set-up is skipped then, so that read-only
    commands never wait for the write lock."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return row is not None


class transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def file_path(text: str, what: str) -> Path:
    """The SQLite file a plain path (or the rest of a ``sqlite://`` URL) names. A libpq
    keyword string (``host=db password=…``) is not taken for a file name: a path with
    ``=`` is refused, naming the URL form (password masked)."""
    from .exceptions import safe_summary

    if "=" in text:
        raise ConfigurationError(
            f"{what} {safe_summary(text)!r} is neither a URL nor a file path (it holds '='; "
            "a libpq keyword string?): use postgresql://user:password@host:5432/db, "
            "sqlite:///path/to/file.db or a path without '='"
        )
    return Path(text)
