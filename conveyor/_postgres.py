"""PostgreSQL connections for the queue and the catalog: a small pool per backend.

``postgresql://`` (or ``postgres://``) URLs are libpq URLs, plus one query
parameter of ours: ``schema`` (default ``conveyor``), the PostgreSQL schema
that holds conveyor's tables, so they never meet a table of the same name
(``documents``…) that the database already has. Connections set
``search_path`` to it at start-up, so the SQL names tables unqualified.

Tables are created on first use inside a transaction holding an advisory lock,
so several processes starting at once against an empty database do not race
on ``CREATE … IF NOT EXISTS`` (which is not safe under concurrency in
PostgreSQL); when they exist already nothing is locked, so a user without
``CREATE`` rights can run against a prepared database.

Every connection is in autocommit mode; multi-statement writes use
``conn.transaction()``. A wrong or unreachable URL raises
:class:`~conveyor.exceptions.ConfigurationError` at once, naming the URL with
its password masked.

Once open, a server that goes away (stopped, restarted, the network gone) is an
outage, not a bug: the connection errors become
:class:`~conveyor.exceptions.BackendUnavailable` (transient: retried; the API
answers 503 with ``Retry-After``), and while the server stays away a caller waits
at most :data:`DOWN_TIMEOUT` seconds for a connection, not :data:`POOL_TIMEOUT`.
The pool reconnects by itself when the server is back.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .exceptions import BackendUnavailable, ConfigurationError, safe_summary

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool
    from psycopg.rows import TupleRow

Connection: TypeAlias = "psycopg.Connection[TupleRow]"
_ConnectionPool: TypeAlias = "psycopg_pool.ConnectionPool[Connection]"

SCHEMES = ("postgresql://", "postgres://")
DEFAULT_SCHEMA = "conveyor"
CONNECT_TIMEOUT = 10  # seconds; libpq waits for ever by default
POOL_TIMEOUT = 30.0  # seconds a caller waits for a free connection
DOWN_TIMEOUT = 1.5  # … while the server is unreachable (it answers 503 within ~2 s)
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# The server's clock as Unix seconds. Hosts' clocks differ; leases and lock
# expiries compare times written by different hosts, so they use this one.
SERVER_NOW = "extract(epoch FROM statement_timestamp())::float8"


def is_postgres_url(url: str) -> bool:
    return url.startswith(SCHEMES)


def _require_psycopg() -> None:
    """psycopg and psycopg-pool are there, or a :class:`ConfigurationError` names the extra."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "PostgreSQL support needs psycopg and psycopg-pool: pip install 'conveyor[postgres]'"
        ) from exc


def split_url(url: str) -> tuple[str, str]:
    """``(libpq URL, schema)``: our ``schema`` parameter taken out, ``postgres://``
    spelled ``postgresql://``, a connect timeout and application name added unless set."""
    if not is_postgres_url(url):
        raise ConfigurationError(f"not a PostgreSQL URL: {safe_summary(url)!r}")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = DEFAULT_SCHEMA
    kept = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            kept.append((key, value))
    if not _IDENTIFIER.fullmatch(schema):
        raise ConfigurationError(
            f"schema {schema!r} in {safe_summary(url)!r} must be a lower-case SQL "
            "identifier (letters, digits, underscores)"
        )
    names = {key for key, _ in kept}
    if "connect_timeout" not in names:
        kept.append(("connect_timeout", str(CONNECT_TIMEOUT)))
    if "application_name" not in names:
        kept.append(("application_name", "conveyor"))
    libpq = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(kept)))
    return libpq, schema


def _options(libpq_url: str, schema: str) -> str:
    """The ``options`` startup parameter: the URL's own, then our ``search_path``."""
    from psycopg.conninfo import conninfo_to_dict

    own = str(conninfo_to_dict(libpq_url).get("options") or "")
    return f"{own} -c search_path={schema}".strip()


def _exist(conn: Connection, schema: str, relations: Sequence[str]) -> bool:
    """Whether every table or index in ``relations`` exists in ``schema``."""
    row = conn.execute(
        "SELECT bool_and(to_regclass(format('%%I.%%I', %s::text, name)) IS NOT NULL)"
        " FROM unnest(%s::text[]) AS name",
        (schema, list(relations)),
    ).fetchone()
    return row is not None and bool(row[0])  # an aggregate: there is always a row


class OutageGuard:
    """Connections from a psycopg pool, with a server that went away made an outage:
    :class:`BackendUnavailable`, and a short wait for a connection while it lasts."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @contextmanager
    def connection(self, pool: Any) -> Iterator[Any]:
        import psycopg
        import psycopg_pool

        timeout = DOWN_TIMEOUT if self._down_since is not None else POOL_TIMEOUT
        try:
            with pool.connection(timeout=timeout) as conn:
                self._down_since = None
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout) as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
                raise  # the server is there; the statement was stopped
            if self._down_since is None:
                self._down_since = time.monotonic()
            raise BackendUnavailable(
                f"the {self.what} database is unreachable ({safe_summary(exc, limit=160)}); "
                "retry shortly"
            ) from exc


class Pool:
    """A small psycopg connection pool on one database and schema, safe across threads.

    ``ddl`` (statements run once, under an advisory lock, unless ``relations``
    — its tables and indexes — all exist) creates the schema's tables. A
    process forked from the one that made the pool opens its own connections
    instead of sharing the parent's sockets.
    """

    def __init__(
        self,
        url: str,
        *,
        what: str,
        ddl: Sequence[str],
        relations: Sequence[str],
        max_size: int = 8,
    ) -> None:
        _require_psycopg()
        import psycopg

        self.url = url
        self.what = what
        self.max_size = max_size
        self._libpq, self.schema = split_url(url)
        self._options = _options(self._libpq, self.schema)
        try:
            with psycopg.connect(self._libpq, autocommit=True, options=self._options) as conn:
                if not _exist(conn, self.schema, relations):
                    with conn.transaction():
                        key = f"conveyor schema {self.schema}"
                        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
                        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                        for statement in ddl:
                            conn.execute(statement)
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"cannot open the {what} database {safe_summary(url)!r}: {safe_summary(exc)}"
            ) from exc
        self._inherited: list[_ConnectionPool] = []
        self._guard = OutageGuard(what)
        self._pool = self._open()

    def _open(self) -> _ConnectionPool:
        import psycopg_pool

        self._pid = os.getpid()
        return psycopg_pool.ConnectionPool(
            self._libpq,
            min_size=1,
            max_size=self.max_size,
            kwargs={"autocommit": True, "options": self._options},
            timeout=POOL_TIMEOUT,
            name=f"conveyor-{self.what}",
            num_workers=1,
            open=True,
        )

    @property
    def down(self) -> bool:
        """Whether the last attempt found the server unreachable."""
        return self._guard.down

    def connection(self) -> AbstractContextManager[Connection]:
        """``with pool.connection() as conn:`` — a connection for this block. Connection
        errors (here or in the block) raise :class:`BackendUnavailable`."""
        if os.getpid() != self._pid:  # forked: never share the parent's sockets
            self._inherited.append(self._pool)
            self._pool = self._open()
        return self._guard.connection(self._pool)

    def close(self) -> None:
        if os.getpid() == self._pid:
            self._pool.close()

    def __repr__(self) -> str:
        return f"Pool({safe_summary(self.url)!r})"
