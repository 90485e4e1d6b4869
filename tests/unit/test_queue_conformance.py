"""The queue conformance suite (``tests/conformance/jobqueue.py``) on the backends
that need no server: memory, SQLite on a file, and the Lambda handler's
BatchQueue; then what only SQLite and the factory do. PostgreSQL and SQS run
the same suite in ``tests/integration/test_queue_conformance_servers.py``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conformance.jobqueue import *  # noqa: F403 (the suite's tests and fixtures)
from conformance.jobqueue import (
    BATCH,
    BATCH_HANDLING,
    EMPTY,
    MEMORY,
    SQLITE,
    QueueBackend,
    depth,
    drain,
)
from support import FakeClock, in_processes

from conveyor.exceptions import ConfigurationError, TransientError
from conveyor.queue import LeaseLost, open_queue
from conveyor.queue.memory import MemoryQueue
from conveyor.queue.sqlite import SqliteQueue


@pytest.fixture(params=[MEMORY.param(), SQLITE.param(), BATCH.param(), BATCH_HANDLING.param()])
def queue_backend(request: pytest.FixtureRequest) -> QueueBackend:
    return request.param  # type: ignore[no-any-return]


def test_lease_lost_is_transient() -> None:
    assert issubclass(LeaseLost, TransientError)


# -- SQLite only ------------------------------------------------------------


def _process_worker(path: str, barrier: Any, results: Any) -> None:
    queue = SqliteQueue(path)
    out: list[str] = []
    barrier.wait(timeout=30)
    try:
        drain(queue, out, work=0.002)  # a little work, so the receivers overlap
    finally:
        queue.close()
        results.put(out)


def test_sqlite_processes_never_share_a_job(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    queue = SqliteQueue(path)
    ids = queue.send_many([{"i": i} for i in range(200)])
    outs = in_processes(_process_worker, (path,), 4, timeout=60)
    assert sum(1 for out in outs if out) >= 2, "the receivers did not overlap"
    delivered = Counter(job_id for out in outs for job_id in out)
    assert [job_id for job_id, n in delivered.items() if n > 1] == []
    assert sorted(delivered) == sorted(ids)
    assert depth(queue) == EMPTY
    queue.close()


def test_sqlite_named_queues_share_a_file_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    clock = FakeClock()
    first = SqliteQueue(path, clock=clock)
    second = SqliteQueue(path, name="second", clock=clock)
    first.send({"q": 1})
    second.send_many([{"q": 2}, {"q": 2}])
    assert first.depth().visible == 1
    assert second.depth().visible == 2
    first.close()
    second.close()
    reopened = SqliteQueue(path, name="second", clock=clock)
    assert [lease.body for lease in reopened.receive(max_jobs=5)] == [{"q": 2}, {"q": 2}]
    reopened.close()
    with pytest.raises(RuntimeError):
        reopened.depth()


def test_sqlite_refuses_in_memory_database() -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        SqliteQueue(":memory:")


# -- factory ----------------------------------------------------------------


def test_open_queue_schemes(tmp_path: Path) -> None:
    memory = open_queue("memory://", max_receives=2)
    assert isinstance(memory, MemoryQueue) and memory.max_receives == 2
    for url in (f"sqlite://{tmp_path}/a.db", str(tmp_path / "b.db")):
        queue = open_queue(url, name="n")
        assert isinstance(queue, SqliteQueue)
        queue.send({"x": 1})
        queue.close()
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()


@pytest.mark.parametrize("url", ["redis://user:s3cret@x", "mysql://x"])
def test_open_queue_refuses_unknown_schemes(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_queue(url)
    message = str(info.value)
    assert "s3cret" not in message
    assert url.split("://")[0] in message
    assert "sqlite://" in message and "memory://" in message and "postgresql://" in message
