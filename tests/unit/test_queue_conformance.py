"""One conformance suite for every JobQueue backend (memory, SQLite on a file,
PostgreSQL on the session's real server, a fresh database per test).

Time is a fake clock the tests advance, so leases expire without sleeping.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.exceptions import ConfigurationError, TransientError
from conveyor.queue import JobQueue, Lease, LeaseLost, QueueDepth, open_queue
from conveyor.queue.memory import MemoryQueue
from conveyor.queue.sqlite import SqliteQueue

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


MakeQueue = Callable[..., JobQueue]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_queue(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[MakeQueue]:
    opened: list[JobQueue] = []
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""

    def make(**kw: Any) -> JobQueue:
        kw.setdefault("clock", clock)
        queue: JobQueue
        if request.param == "memory":
            queue = MemoryQueue(**kw)
        elif request.param == "postgres":
            from conveyor.queue.postgres import PostgresQueue

            queue = PostgresQueue(url, **kw)
        else:
            queue = SqliteQueue(tmp_path / "queue.db", **kw)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


@pytest.fixture
def queue(make_queue: MakeQueue) -> JobQueue:
    return make_queue()


def depth(queue: JobQueue) -> dict[str, int]:
    return queue.depth().as_dict()


EMPTY = {"visible": 0, "in_flight": 0, "delayed": 0, "dead": 0}


def test_send_receive_ack(queue: JobQueue, clock: FakeClock) -> None:
    body = {"source": "file:///a.pdf", "collection": "c", "options": {"n": [1, 2.5, None]}}
    job_id = queue.send(body)
    assert isinstance(job_id, str) and len(job_id) == 32
    assert depth(queue) == {**EMPTY, "visible": 1}

    [lease] = queue.receive(visibility_timeout=30)
    assert lease.job_id == job_id
    assert lease.body == body
    assert lease.receive_count == 1
    assert lease.leased_until == T0 + 30
    assert lease.last_error is None
    assert queue.receive() == []
    assert depth(queue) == {**EMPTY, "in_flight": 1}

    queue.ack(lease)
    assert depth(queue) == EMPTY
    with pytest.raises(LeaseLost):
        queue.ack(lease)


def test_lease_lost_is_transient() -> None:
    assert issubclass(LeaseLost, TransientError)


def test_receive_limit_and_send_many(queue: JobQueue) -> None:
    ids = queue.send_many([{"i": i} for i in range(5)])
    assert len(set(ids)) == 5
    assert queue.send_many([]) == []
    first = queue.receive(max_jobs=3)
    assert len(first) == 3
    rest = queue.receive(max_jobs=10)
    assert len(rest) == 2
    assert sorted(lease.job_id for lease in first + rest) == sorted(ids)
    assert queue.receive(max_jobs=10) == []


def test_fifo(queue: JobQueue, clock: FakeClock) -> None:
    sent = []
    for i in range(3):
        sent.append(queue.send({"i": i}))
        clock.advance(1)
    sent += queue.send_many([{"i": i} for i in range(3, 8)])  # same timestamp: in order
    got = [queue.receive()[0].job_id for _ in range(8)]
    assert got == sent


def test_bad_bodies_are_refused(queue: JobQueue) -> None:
    with pytest.raises(TypeError):
        queue.send([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        queue.send({"x": object()})
    with pytest.raises(TypeError):
        queue.send_many([{"ok": 1}, {"x": {1, 2}}])
    assert depth(queue) == EMPTY  # all or none


def test_send_with_delay(queue: JobQueue, clock: FakeClock) -> None:
    queue.send({"a": 1}, delay=10)
    assert depth(queue) == {**EMPTY, "delayed": 1}
    assert queue.receive() == []
    clock.advance(10)
    assert depth(queue) == {**EMPTY, "visible": 1}
    assert len(queue.receive()) == 1


def test_lease_expiry_redelivers(queue: JobQueue, clock: FakeClock) -> None:
    job_id = queue.send({"a": 1})
    [old] = queue.receive(visibility_timeout=30)
    clock.advance(29)
    assert queue.receive() == []
    clock.advance(2)
    assert depth(queue) == {**EMPTY, "visible": 1}  # an expired lease counts as visible

    [new] = queue.receive(visibility_timeout=30)
    assert new.job_id == job_id
    assert new.receive_count == 2
    assert new.receipt != old.receipt
    with pytest.raises(LeaseLost):
        queue.ack(old)
    with pytest.raises(LeaseLost):
        queue.extend(old, 60)
    with pytest.raises(LeaseLost):
        queue.release(old)
    with pytest.raises(LeaseLost):
        queue.dead_letter(old, "x")
    assert depth(queue) == {**EMPTY, "in_flight": 1}
    queue.ack(new)
    assert depth(queue) == EMPTY


def test_receipt_stays_valid_until_redelivered(queue: JobQueue, clock: FakeClock) -> None:
    queue.send({"a": 1})
    [lease] = queue.receive(visibility_timeout=10)
    clock.advance(20)  # expired, but nobody has received it since
    queue.ack(lease)
    assert depth(queue) == EMPTY


def test_extend_keeps_job_invisible(queue: JobQueue, clock: FakeClock) -> None:
    queue.send({"a": 1})
    [lease] = queue.receive(visibility_timeout=10)
    clock.advance(8)
    extended = queue.extend(lease, 30)
    assert extended.leased_until == T0 + 38
    assert extended.receipt == lease.receipt
    clock.advance(10)  # past the original lease
    assert queue.receive() == []
    assert depth(queue) == {**EMPTY, "in_flight": 1}
    clock.advance(21)
    assert depth(queue) == {**EMPTY, "visible": 1}
    [again] = queue.receive()
    assert again.receive_count == 2


def test_release_with_delay(queue: JobQueue, clock: FakeClock) -> None:
    queue.send({"a": 1})
    [lease] = queue.receive()
    queue.release(lease, delay=20, error="TimeoutError: embed server")
    assert depth(queue) == {**EMPTY, "delayed": 1}
    assert queue.receive() == []
    with pytest.raises(LeaseLost):
        queue.ack(lease)
    clock.advance(20)
    assert depth(queue) == {**EMPTY, "visible": 1}
    [again] = queue.receive()
    assert again.receive_count == 2
    assert again.last_error == "TimeoutError: embed server"


def test_release_without_delay_is_visible_now(queue: JobQueue) -> None:
    queue.send({"a": 1})
    [lease] = queue.receive()
    queue.release(lease)
    [again] = queue.receive()
    assert again.receive_count == 2
    assert again.last_error is None


def test_dead_letter_after_max_receives_keeps_last_error(
    make_queue: MakeQueue, clock: FakeClock
) -> None:
    queue = make_queue(max_receives=3)
    assert queue.max_receives == 3
    job_id = queue.send({"a": 1})
    clock.advance(1)
    other = queue.send({"b": 2})
    for attempt in range(1, 4):
        leases = queue.receive(max_jobs=1)
        assert [(x.job_id, x.receive_count) for x in leases] == [(job_id, attempt)]
        queue.release(leases[0], error=f"error {attempt}")
        clock.advance(1)
    [lease] = queue.receive(max_jobs=5)  # job_id is dead-lettered, not returned
    assert lease.job_id == other
    assert depth(queue) == {**EMPTY, "in_flight": 1, "dead": 1}
    [dead] = queue.dead_letters()
    assert dead.job_id == job_id
    assert dead.body == {"a": 1}
    assert dead.receive_count == 3
    assert dead.error == "error 3"
    assert dead.first_seen == T0
    assert dead.last_seen == T0 + 4


def test_dead_letter_after_expired_leases(make_queue: MakeQueue, clock: FakeClock) -> None:
    queue = make_queue(max_receives=2)
    queue.send({"a": 1})
    for _ in range(2):
        assert len(queue.receive(visibility_timeout=5)) == 1
        clock.advance(6)
    assert queue.receive() == []
    [dead] = queue.dead_letters()
    assert dead.receive_count == 2
    assert dead.error is not None and "lease expired 2 times" in dead.error


def test_dead_letter_directly(queue: JobQueue, clock: FakeClock) -> None:
    job_id = queue.send({"a": 1})
    [lease] = queue.receive()
    clock.advance(3)
    queue.dead_letter(lease, "EncryptedFile: password-protected PDF")
    assert depth(queue) == {**EMPTY, "dead": 1}
    assert queue.receive() == []
    [dead] = queue.dead_letters()
    assert (dead.job_id, dead.receive_count, dead.error) == (
        job_id,
        1,
        "EncryptedFile: password-protected PDF",
    )
    assert (dead.first_seen, dead.last_seen) == (T0, T0 + 3)
    with pytest.raises(LeaseLost):
        queue.ack(lease)


def _kill_all(queue: JobQueue, clock: FakeClock, n: int) -> list[str]:
    ids = queue.send_many([{"i": i} for i in range(n)])
    for lease in queue.receive(max_jobs=n):
        queue.dead_letter(lease, f"bad {lease.body['i']}")
        clock.advance(1)
    return ids


def test_dead_letters_newest_first_with_limit(queue: JobQueue, clock: FakeClock) -> None:
    ids = _kill_all(queue, clock, 4)
    assert [d.job_id for d in queue.dead_letters()] == ids[::-1]
    assert [d.job_id for d in queue.dead_letters(limit=2)] == ids[:1:-1]


def test_redrive_by_id_and_all(queue: JobQueue, clock: FakeClock) -> None:
    ids = _kill_all(queue, clock, 3)
    assert queue.redrive([ids[1], "no-such-job"]) == 1
    assert depth(queue) == {**EMPTY, "visible": 1, "dead": 2}
    [lease] = queue.receive(max_jobs=5)
    assert (lease.job_id, lease.receive_count, lease.last_error) == (ids[1], 1, None)
    assert queue.redrive([ids[1]]) == 0  # leased, not dead
    assert queue.redrive() == 2
    assert queue.redrive() == 0
    assert depth(queue) == {**EMPTY, "visible": 2, "in_flight": 1}
    assert sorted(x.job_id for x in queue.receive(max_jobs=5)) == sorted([ids[0], ids[2]])


def test_depth_counts_each_state(queue: JobQueue, clock: FakeClock) -> None:
    queue.send_many([{"v": 1}, {"v": 2}, {"f": 1}, {"d": 1}, {"x": 1}])
    queue.send({"later": 1}, delay=100)
    leases = queue.receive(max_jobs=5, visibility_timeout=50)
    assert len(leases) == 5
    queue.release(leases[0])  # visible again at once
    queue.release(leases[1], delay=10)  # visible again after 10 s
    queue.dead_letter(leases[3], "bad")  # dead
    queue.extend(leases[4], 10)  # lease runs out after 10 s: visible
    # leases[2] stays in flight; {"later": 1} stays delayed
    clock.advance(20)
    assert queue.depth() == QueueDepth(visible=3, in_flight=1, delayed=1, dead=1)


def test_invalid_arguments(queue: JobQueue) -> None:
    with pytest.raises(ValueError):
        queue.receive(visibility_timeout=0)
    assert queue.receive(max_jobs=0) == []


def _drain(queue: JobQueue, out: list[str], work: float = 0.0) -> None:
    while leases := queue.receive(max_jobs=3, visibility_timeout=60):
        for lease in leases:
            out.append(lease.job_id)
            time.sleep(work)
            queue.ack(lease)


def test_concurrent_threads_never_share_a_job(queue: JobQueue) -> None:
    ids = queue.send_many([{"i": i} for i in range(200)])
    results: list[list[str]] = [[] for _ in range(8)]
    threads = [threading.Thread(target=_drain, args=(queue, out, 0.001)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(1 for out in results if out) >= 2, "the receivers did not overlap"
    delivered = Counter(job_id for out in results for job_id in out)
    assert [job_id for job_id, n in delivered.items() if n > 1] == []
    assert sorted(delivered) == sorted(ids)
    assert depth(queue) == EMPTY


# -- SQLite only ------------------------------------------------------------


def _process_worker(path: str, barrier: Any, results: Any) -> None:
    queue = SqliteQueue(path)
    out: list[str] = []
    barrier.wait(timeout=30)
    try:
        _drain(queue, out, work=0.002)  # a little work, so the receivers overlap
    finally:
        queue.close()
        results.put(out)


def test_sqlite_processes_never_share_a_job(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    queue = SqliteQueue(path)
    ids = queue.send_many([{"i": i} for i in range(200)])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(path, barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outs = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert sum(1 for out in outs if out) >= 2, "the receivers did not overlap"
    delivered = Counter(job_id for out in outs for job_id in out)
    assert [job_id for job_id, n in delivered.items() if n > 1] == []
    assert sorted(delivered) == sorted(ids)
    assert depth(queue) == EMPTY
    queue.close()


def test_sqlite_named_queues_share_a_file_and_persist(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "q.db"
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


def test_leases_are_frozen(queue: JobQueue) -> None:
    queue.send({"a": 1})
    [lease] = queue.receive()
    assert isinstance(lease, Lease)
    with pytest.raises(AttributeError):
        lease.receipt = "forged"  # type: ignore[misc]


def test_release_with_refund_does_not_count_the_delivery(queue) -> None:
    """A worker shutting down gives jobs back without bringing them nearer the DLQ."""
    queue.send({"n": 1})
    lease = queue.receive(1, visibility_timeout=30)[0]
    assert lease.receive_count == 1
    queue.release(lease, refund=True)
    again = queue.receive(1, visibility_timeout=30)[0]
    assert again.receive_count == 1
    queue.release(again)
    assert queue.receive(1, visibility_timeout=30)[0].receive_count == 2
