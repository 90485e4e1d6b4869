"""The PostgreSQL queue beyond the shared conformance suite: processes on "many
hosts", the server's clock, schema set-up racing, and start-up errors.

The conformance suite (tests/conformance/jobqueue.py) runs against PostgreSQL
in test_queue_conformance_servers.py; these tests need what only a real server
shows.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest
from servers.postgres import database_url
from support import in_processes

from conveyor.exceptions import ConfigurationError
from conveyor.queue import LeaseLost, open_queue
from conveyor.queue.postgres import PostgresQueue


def _drain(url: str, barrier: Any, results: Any) -> None:
    """A worker on its own host: receive, work a little, ack; report what it acked."""
    queue = PostgresQueue(url)
    acked: list[str] = []
    lost = 0
    barrier.wait(timeout=60)
    try:
        while leases := queue.receive(max_jobs=2, visibility_timeout=60):
            for lease in leases:
                time.sleep(0.002)  # a little work, so the receivers overlap
                try:
                    queue.ack(lease)
                except LeaseLost:
                    lost += 1
                else:
                    acked.append(lease.job_id)
    finally:
        queue.close()
        results.put((acked, lost))


def test_processes_never_get_the_same_job(postgres_url: str) -> None:
    """Three processes (three hosts, as far as the queue can tell) drain one queue:
    every job is delivered once and acked exactly once."""
    queue = PostgresQueue(postgres_url)
    ids = queue.send_many([{"i": i} for i in range(300)])
    outs = in_processes(_drain, (postgres_url,), 3)
    assert sum(lost for _, lost in outs) == 0
    assert sum(1 for acked, _ in outs if acked) >= 2, "the receivers did not overlap"
    delivered = Counter(job_id for acked, _ in outs for job_id in acked)
    assert [job_id for job_id, n in delivered.items() if n > 1] == []
    assert sorted(delivered) == sorted(ids)
    assert queue.depth().as_dict() == {"visible": 0, "in_flight": 0, "delayed": 0, "dead": 0}
    queue.close()


def test_leases_follow_the_servers_clock(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host whose clock is a day off still leases for the right time: lease
    times come from the database server."""
    queue = PostgresQueue(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        server_now = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()[0]
    monkeypatch.setattr(time, "time", lambda: server_now + 86_400)  # this host is wrong
    queue.send({"a": 1})
    [lease] = queue.receive(visibility_timeout=0.5)
    assert abs(lease.leased_until - (server_now + 0.5)) < 5
    assert queue.receive() == []
    assert queue.depth().in_flight == 1
    longer = queue.extend(lease, 30)
    assert 25 < longer.leased_until - lease.leased_until < 35
    queue.release(longer, delay=0.3)
    assert queue.depth().delayed == 1
    monkeypatch.undo()
    time.sleep(0.4)
    [again] = queue.receive(visibility_timeout=0.3)
    assert again.receive_count == 2
    time.sleep(0.4)
    assert queue.depth().visible == 1  # the lease ran out on the server's clock
    queue.close()


def _open_both(url: str, barrier: Any, results: Any) -> None:
    from conveyor.catalog import open_catalog

    barrier.wait(timeout=60)
    queue = PostgresQueue(url, name="race")
    catalog = open_catalog(url)
    queue.send({"from": "a racer"})
    catalog.start_run("race", "default", 1)
    queue.close()
    catalog.close()
    results.put("opened")


def test_processes_starting_at_once_create_the_schema_once(postgres_url: str) -> None:
    assert in_processes(_open_both, (postgres_url,), 4) == ["opened"] * 4
    queue = PostgresQueue(postgres_url, name="race")
    assert queue.depth().visible == 4
    queue.close()


def test_schema_parameter_keeps_queues_apart(postgres_url: str) -> None:
    first = open_queue(postgres_url.replace("postgresql://", "postgres://", 1))
    second = open_queue(postgres_url + "?schema=tenant_b")
    assert isinstance(first, PostgresQueue) and isinstance(second, PostgresQueue)
    first.send({"q": 1})
    assert (first.depth().visible, second.depth().visible) == (1, 0)
    with psycopg.connect(postgres_url) as conn:
        schemas = conn.execute(
            "SELECT table_schema FROM information_schema.tables"
            " WHERE table_name = 'queue_jobs' ORDER BY 1"
        ).fetchall()
    assert schemas == [("conveyor",), ("tenant_b",)]
    first.close()
    second.close()
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresQueue(postgres_url + "?schema=Robert'); DROP TABLE x;--")


def test_wrong_password_fails_at_start_with_the_password_masked(postgres_url: str) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    wrong = postgres_url.replace(password, "not-the-password")
    with pytest.raises(ConfigurationError) as info:
        open_queue(wrong)
    message = str(info.value)
    assert "password authentication failed" in message
    assert "not-the-password" not in message and password not in message
    assert "postgresql://postgres:***@127.0.0.1" in message


def test_missing_database_and_closed_port_fail_at_start(postgres_server: str) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        PostgresQueue(database_url(postgres_server, "no_such_database"))
    with pytest.raises(ConfigurationError) as info:
        PostgresQueue("postgresql://bob:hunter2@127.0.0.1:1/conveyor?connect_timeout=3")
    message = str(info.value)
    assert "hunter2" not in message
    assert "postgresql://bob:***@127.0.0.1:1/conveyor" in message
    assert "queue" in message


def test_a_role_without_create_rights_runs_on_a_prepared_database(postgres_url: str) -> None:
    """An administrator creates the tables once; workers log in as a role that may
    only read and write rows."""
    from conveyor.catalog import open_catalog

    PostgresQueue(postgres_url).close()
    open_catalog(postgres_url).close()
    role = f"worker_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'w0rker'")
        conn.execute(f"GRANT USAGE ON SCHEMA conveyor TO {role}")
        conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA conveyor TO {role}"
        )
        conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA conveyor TO {role}")
    url = postgres_url.replace("postgresql://postgres:", f"postgresql://{role}:", 1)
    url = url.replace(url.split(":")[2].split("@")[0], "w0rker", 1)
    try:
        queue, catalog = PostgresQueue(url), open_catalog(url)
        queue.send({"a": 1})
        [lease] = queue.receive()
        queue.ack(lease)
        catalog.enqueued([("d", "c", "file:///a")], "r")
        assert catalog.add_delta("c", "d", {}, [], b"", read_at=0.0, delivery="r", part=0) >= 1
        queue.close()
        catalog.close()
        with pytest.raises(ConfigurationError, match="permission denied"):
            PostgresQueue(url + "?schema=elsewhere")  # would have to create tables
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
