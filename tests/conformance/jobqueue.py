"""The :class:`~conveyor.queue.JobQueue` contract, as tests every backend runs.

A test module imports everything here (``from conformance.jobqueue import *``)
and defines ``queue_backend``: a fixture parametrised over the
:class:`QueueBackend` values it runs the suite on. ``tests/unit`` runs it on
:data:`MEMORY`, :data:`SQLITE`, and the Lambda handler's queue between messages
(:data:`BATCH`) and while it handles one (:data:`BATCH_HANDLING`);
``tests/integration`` on
:data:`POSTGRES` and :data:`SQS`. A backend lists the tests it cannot pass with
the reason (``skips``); they are skipped saying it, and naming a test that does
not exist is an error.

Time is a :class:`~support.FakeClock` the tests advance, so leases expire
without sleeping; SQS keeps time itself, so its clock sleeps when advanced.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import T0, FakeClock

from conveyor.queue import DEFAULT_MAX_RECEIVES, JobQueue, Lease, LeaseLost, QueueDepth, ack_all

MakeQueue = Callable[..., JobQueue]


@dataclass
class Opening:
    """What a backend opens its queues with, for one test: the test's clock, the
    fixtures it asked for (``QueueBackend.fixtures``), and clean-ups to run after
    the queues are closed."""

    clock: FakeClock
    fixtures: dict[str, Any]
    cleanups: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class QueueBackend:
    """One backend of the suite. ``open(opening, **kw)`` opens a queue (``kw``: the
    constructor's ``max_receives`` and the like); every call of one test reaches
    the same jobs where the backend is shared (a file, a database), as another
    process would. ``skips``: test name → why this backend cannot pass it."""

    name: str
    open: Callable[..., JobQueue]
    fixtures: tuple[str, ...] = ()
    skips: Mapping[str, str] = field(default_factory=dict)
    clock: Callable[[], FakeClock] = FakeClock

    def param(self) -> Any:
        return pytest.param(self, id=self.name)


class SleepingClock(FakeClock):
    """The suite's clock, but advancing it waits for real (SQS keeps time itself).
    Reads stay exact (T0 + what was advanced), so lease ends are predictable."""

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)
        super().advance(seconds)


# -- the backends ------------------------------------------------------------


def _memory(opening: Opening, **kw: Any) -> JobQueue:
    from conveyor.queue.memory import MemoryQueue

    return MemoryQueue(clock=opening.clock, **kw)


def _sqlite(opening: Opening, **kw: Any) -> JobQueue:
    from conveyor.queue.sqlite import SqliteQueue

    path: Path = opening.fixtures["tmp_path"] / "queue.db"
    return SqliteQueue(path, clock=opening.clock, **kw)


def _batch(opening: Opening, *, max_receives: int = DEFAULT_MAX_RECEIVES) -> JobQueue:
    from conveyor.aws.batch import BatchQueue

    queue = BatchQueue(max_receives=max_receives)
    queue._clock = opening.clock  # BatchQueue takes no clock: MemoryQueue's attribute
    return queue


def _batch_handling(opening: Opening, *, max_receives: int = DEFAULT_MAX_RECEIVES) -> JobQueue:
    queue = _batch(opening, max_receives=max_receives)
    queue.current = HANDLED  # type: ignore[attr-defined]
    return queue


def _postgres(opening: Opening, **kw: Any) -> JobQueue:
    from conveyor.queue.postgres import PostgresQueue

    return PostgresQueue(opening.fixtures["postgres_url"], clock=opening.clock, **kw)


def _sqs(opening: Opening, *, max_receives: int = 5, **kw: Any) -> JobQueue:
    from servers.aws import client, make_sqs_queue

    from conveyor.queue.sqs import SqsQueue

    info = make_sqs_queue(max_receives=max_receives)
    for url in (info.url, info.dlq_url):
        opening.cleanups.append(lambda url=url: client("sqs").delete_queue(QueueUrl=url))
    return SqsQueue(info.conveyor_url, clock=opening.clock, **kw)


MEMORY = QueueBackend("memory", _memory)
SQLITE = QueueBackend("sqlite", _sqlite, fixtures=("tmp_path",))
BATCH = QueueBackend("batch", _batch)
"""The queue the Lambda handler and ``conveyor run-job`` put received messages in
(:class:`conveyor.aws.batch.BatchQueue`), between messages: the whole contract."""

HANDLED = Lease("sqs-message", "receipt", {"Records": []}, 1, T0 + 60, None)
"""The message a :data:`BATCH_HANDLING` queue is handling (not itself in the queue,
so that it does not count in the depths the tests check)."""
_CHILD = "while a message is handled, what is sent joins the batch as its child"
BATCH_HANDLING = QueueBackend(
    "batch-handling",
    _batch_handling,
    skips={
        "test_send_receive_ack": f"{_CHILD}, with the message's id and 8 hex digits as its id "
        "('sqs-message/0f3a…'), not a 32-digit one: logs and the catalog name the message",
        "test_send_with_delay": f"{_CHILD}, delivered at once: send(delay=...) is ignored, the "
        "child runs in the same invocation",
        "test_depth_counts_each_state": f"{_CHILD}, delivered at once: a job sent with a delay "
        "is visible, not delayed",
        "test_bad_bodies_are_refused": f"{_CHILD}, one body at a time: send_many delivers the "
        "bodies before a bad one (not all or none) before it raises TypeError",
    },
)
"""The same queue while the processor handles a message (``current`` set), as when
an S3 event fans out into a job per object."""
POSTGRES = QueueBackend("postgres", _postgres, fixtures=("postgres_url",))

_STALE_RECEIPT = (
    "SQS accepts a superseded or already-used receipt handle (DeleteMessage succeeds), "
    "so a lost lease cannot always be detected; see test_sqs_stale_receipts"
)
_REAL_TIME = "waits {} s of real time on SQS; {} checks the same with 1-2 s timeouts"
_NO_LAST_ERROR = (
    "SQS cannot store an error on a message it keeps, so release(error=...) is not "
    "kept and a job SQS dead-letters by receive count has no error; {} checks the rest"
)
SQS = QueueBackend(
    "sqs",
    _sqs,
    fixtures=("moto_server",),
    clock=SleepingClock,
    skips={
        "test_send_receive_ack": f"{_STALE_RECEIPT} (acking twice); test_sqs_send_receive_ack",
        "test_ack_all_acks_each_and_names_the_leases_lost": f"{_STALE_RECEIPT}; test_sqs_ack_all",
        "test_fifo": "standard SQS queues are best-effort FIFO: order is not guaranteed",
        "test_send_with_delay": _REAL_TIME.format(10, "test_sqs_send_with_delay"),
        "test_lease_expiry_redelivers": f"{_STALE_RECEIPT}; also "
        + _REAL_TIME.format(31, "test_sqs_leases"),
        "test_receipt_stays_valid_until_redelivered": _REAL_TIME.format(20, "test_sqs_leases"),
        "test_extend_keeps_job_invisible": _REAL_TIME.format(39, "test_sqs_extend"),
        "test_release_with_delay": _NO_LAST_ERROR.format("test_sqs_release_with_delay")
        + "; a job released with a delay counts as in flight, not delayed",
        "test_dead_letter_after_max_receives_keeps_last_error": _NO_LAST_ERROR.format(
            "test_sqs_dead_letter_by_receive_count"
        ),
        "test_dead_letter_after_expired_leases": "SQS cannot tell an expired lease from a "
        "release, so no 'lease expired' reason; test_sqs_dead_letter_by_receive_count",
        "test_dead_letter_directly": f"{_STALE_RECEIPT} (acking a dead-lettered job); "
        "test_sqs_dead_letter",
        "test_depth_counts_each_state": "a job released with a delay counts as in flight on "
        "SQS (both are not visible); test_sqs_depth_counts_each_state",
        "test_release_with_refund_does_not_count_the_delivery": "SQS cannot lower a message's "
        "receive count: a refunded release still counts; test_sqs_refund_still_counts",
        "test_concurrent_threads_never_share_a_job": "standard SQS queues are at-least-once: "
        "now and then two receivers get the same message (moto's server, whose receive is "
        "not locked, more often); test_sqs_concurrent_receivers_lose_nothing",
    },
)


# -- fixtures ------------------------------------------------------------------


@pytest.fixture
def clock(queue_backend: QueueBackend) -> FakeClock:
    return queue_backend.clock()


@pytest.fixture
def make_queue(
    request: pytest.FixtureRequest, queue_backend: QueueBackend, clock: FakeClock
) -> Iterator[MakeQueue]:
    """Opens queues of the backend (each call: another process, as it were); skips
    the test, saying why, where the backend cannot keep this part of the contract."""
    unknown = set(queue_backend.skips) - set(TESTS)
    assert not unknown, f"{queue_backend.name} skips tests the suite does not have: {unknown}"
    reason = queue_backend.skips.get(request.function.__name__)
    if reason is not None:
        pytest.skip(f"{queue_backend.name}: {reason}")
    opening = Opening(
        clock, {name: request.getfixturevalue(name) for name in queue_backend.fixtures}
    )
    opened: list[JobQueue] = []

    def make(**kw: Any) -> JobQueue:
        queue = queue_backend.open(opening, **kw)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()
    for cleanup in reversed(opening.cleanups):
        cleanup()


@pytest.fixture
def queue(make_queue: MakeQueue) -> JobQueue:
    return make_queue()


# -- the tests -------------------------------------------------------------------


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


def test_ack_all_acks_each_and_names_the_leases_lost(queue: JobQueue, clock: FakeClock) -> None:
    """A worker's group acked together (``ack_all``: one transaction where the queue can):
    each current lease's job leaves the queue; one no longer current is named, and the
    job it lost stays with its new holder."""
    queue.send_many([{"i": i} for i in range(4)])
    leases = queue.receive(4, visibility_timeout=2)
    assert len(leases) == 4
    kept = [queue.extend(lease, 60) for lease in leases[:3]]
    clock.advance(3)  # the last one's lease runs out and another worker takes it
    [again] = queue.receive(visibility_timeout=30)
    assert again.job_id == leases[3].job_id
    assert ack_all(queue, [*kept, leases[3]]) == [leases[3]]
    assert depth(queue) == {**EMPTY, "in_flight": 1}
    queue.ack(again)
    assert depth(queue) == EMPTY
    assert ack_all(queue, []) == []


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


def drain(queue: JobQueue, out: list[str], work: float = 0.0) -> None:
    """Receive, work ``work`` seconds, ack, until the queue is empty; ``out`` gets the ids."""
    while leases := queue.receive(max_jobs=3, visibility_timeout=60):
        for lease in leases:
            out.append(lease.job_id)
            time.sleep(work)
            queue.ack(lease)


def drain_in_threads(
    queue: JobQueue, *, jobs: int = 200, threads: int = 8, timeout: float = 30
) -> tuple[list[str], Counter[str]]:
    """Send ``jobs`` jobs and drain them with ``threads`` threads at once; returns the
    ids sent and how often each id was delivered. The threads must have overlapped."""
    ids = queue.send_many([{"i": i} for i in range(jobs)])
    results: list[list[str]] = [[] for _ in range(threads)]
    running = [threading.Thread(target=drain, args=(queue, out, 0.001)) for out in results]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=timeout)
    assert sum(1 for out in results if out) >= 2, "the receivers did not overlap"
    return ids, Counter(job_id for out in results for job_id in out)


def test_concurrent_threads_never_share_a_job(queue: JobQueue) -> None:
    ids, delivered = drain_in_threads(queue)
    assert [job_id for job_id, n in delivered.items() if n > 1] == []
    assert sorted(delivered) == sorted(ids)
    assert depth(queue) == EMPTY


def test_leases_are_frozen(queue: JobQueue) -> None:
    queue.send({"a": 1})
    [lease] = queue.receive()
    assert isinstance(lease, Lease)
    with pytest.raises(AttributeError):
        lease.receipt = "forged"  # type: ignore[misc]


def test_release_with_refund_does_not_count_the_delivery(queue: JobQueue) -> None:
    """A worker shutting down gives jobs back without bringing them nearer the DLQ."""
    queue.send({"n": 1})
    lease = queue.receive(1, visibility_timeout=30)[0]
    assert lease.receive_count == 1
    queue.release(lease, refund=True)
    again = queue.receive(1, visibility_timeout=30)[0]
    assert again.receive_count == 1
    queue.release(again)
    assert queue.receive(1, visibility_timeout=30)[0].receive_count == 2


TESTS = sorted(name for name in dict(globals()) if name.startswith("test_"))
__all__ = ["clock", "make_queue", "queue", *TESTS]
