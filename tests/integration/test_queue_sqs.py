"""SQS (a real moto server over HTTP) beyond the shared queue conformance suite.

The suite runs on SQS in ``test_queue_conformance_servers.py``, with the tests
SQS cannot keep, or would wait tens of seconds of real time for, skipped with
the reason (``conformance.jobqueue.SQS``). The ``test_sqs_*`` tests here check
the same behaviour with 1-2 s timeouts, and pin down what SQS does instead
where it differs (the module docstring of ``conveyor.queue.sqs`` lists those);
time passes for real, the suite's clock sleeping when a test advances it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from conformance import jobqueue
from conformance.jobqueue import EMPTY, SQS, QueueBackend, SleepingClock, depth, drain_in_threads
from servers.aws import REGION, SqsQueueInfo, client, make_sqs_queue
from support import T0

from conveyor.exceptions import ConfigurationError
from conveyor.queue import JobQueue, Lease, QueueDepth, ack_all, open_queue
from conveyor.queue.sqs import RAW_BODY, SqsQueue, parse_url


@pytest.fixture
def queue_backend() -> QueueBackend:
    return SQS


# the suite's fixtures, here on SQS alone
clock, make_queue, queue = jobqueue.clock, jobqueue.make_queue, jobqueue.queue


# -- the same behaviour on SQS, in real time --------------------------------


def test_sqs_send_receive_ack(queue: SqsQueue) -> None:
    body = {"source": "s3://b/a.pdf", "collection": "c", "options": {"n": [1, 2.5, None]}}
    job_id = queue.send(body)
    assert isinstance(job_id, str) and len(job_id) == 32
    assert depth(queue) == {**EMPTY, "visible": 1}
    [lease] = queue.receive(visibility_timeout=30)
    assert (lease.job_id, lease.body, lease.receive_count) == (job_id, body, 1)
    assert lease.leased_until == T0 + 30
    assert lease.last_error is None
    assert queue.receive() == []
    assert depth(queue) == {**EMPTY, "in_flight": 1}
    queue.ack(lease)
    assert depth(queue) == EMPTY


def test_sqs_ack_all(queue: SqsQueue) -> None:
    """A worker's group acked together: every job leaves the queue."""
    queue.send_many([{"i": i} for i in range(3)])
    leases: list[Lease] = []
    for _ in range(5):  # SQS may hand out fewer than asked at a time
        leases += queue.receive(3 - len(leases), visibility_timeout=30)
        if len(leases) == 3:
            break
    assert len(leases) == 3 and depth(queue) == {**EMPTY, "in_flight": 3}
    assert ack_all(queue, leases) == []
    assert depth(queue) == EMPTY


def test_sqs_concurrent_receivers_lose_nothing(queue: SqsQueue) -> None:
    """Eight threads drain 200 jobs: every job is delivered (a rare duplicate is
    allowed: at-least-once), all are acked, the queue ends empty."""
    ids, delivered = drain_in_threads(queue, timeout=60)
    assert sorted(delivered) == sorted(ids)
    assert depth(queue) == EMPTY


def test_sqs_stale_receipts(queue: SqsQueue) -> None:
    """What SQS does with used receipts: acking again is accepted, and does no harm."""
    queue.send({"a": 1})
    [lease] = queue.receive(visibility_timeout=30)
    queue.ack(lease)
    queue.ack(lease)  # accepted by SQS; the job stays deleted
    assert depth(queue) == EMPTY
    assert queue.receive() == []


def test_sqs_send_with_delay(queue: SqsQueue) -> None:
    queue.send({"a": 1}, delay=2)
    assert depth(queue) == {**EMPTY, "delayed": 1}
    assert queue.receive() == []
    time.sleep(2.2)
    assert depth(queue) == {**EMPTY, "visible": 1}
    assert len(queue.receive()) == 1
    with pytest.raises(ValueError, match="900"):
        queue.send({"a": 1}, delay=3600)


def test_sqs_leases(queue: SqsQueue) -> None:
    """A lease runs out and the job comes back with a new receipt; a receipt whose
    lease ran out still acks while nobody has received the job since."""
    job_id = queue.send({"a": 1})
    [first] = queue.receive(visibility_timeout=1)
    assert queue.receive() == []
    time.sleep(1.3)
    assert depth(queue) == {**EMPTY, "visible": 1}
    [second] = queue.receive(visibility_timeout=1)
    assert (second.job_id, second.receive_count) == (job_id, 2)
    assert second.receipt != first.receipt
    time.sleep(1.3)  # expired again, not received since: the receipt still acks
    queue.ack(second)
    assert depth(queue) == EMPTY


def test_sqs_extend(queue: SqsQueue, clock: SleepingClock) -> None:
    queue.send({"a": 1})
    [lease] = queue.receive(visibility_timeout=1)
    extended = queue.extend(lease, 3)
    assert extended.leased_until == T0 + 3
    assert extended.receipt == lease.receipt
    time.sleep(1.5)  # past the first lease
    assert queue.receive() == []
    assert depth(queue) == {**EMPTY, "in_flight": 1}
    time.sleep(2.0)
    [again] = queue.receive()
    assert again.receive_count == 2
    with pytest.raises(ValueError, match="43200"):
        queue.extend(again, 50_000)


def test_sqs_release_with_delay(queue: SqsQueue) -> None:
    queue.send({"a": 1})
    [lease] = queue.receive()
    queue.release(lease, delay=2, error="TimeoutError: embed server")
    assert queue.receive() == []
    assert depth(queue) == {**EMPTY, "in_flight": 1}  # SQS: a delayed release is not visible
    time.sleep(2.2)
    [again] = queue.receive()
    assert again.receive_count == 2
    assert again.last_error is None  # kept on the document by the worker, not on SQS


def test_sqs_refund_still_counts(queue: SqsQueue) -> None:
    queue.send({"n": 1})
    [lease] = queue.receive(1, visibility_timeout=30)
    queue.release(lease, refund=True)
    [again] = queue.receive(1, visibility_timeout=30)
    assert again.receive_count == 2


def test_sqs_dead_letter(queue: SqsQueue, clock: SleepingClock) -> None:
    job_id = queue.send({"a": 1})
    [lease] = queue.receive()
    clock.now += 3  # the queue's clock stamps the times; no need to wait
    queue.dead_letter(lease, "EncryptedFile: password-protected PDF")
    assert depth(queue) == {**EMPTY, "dead": 1}
    assert queue.receive() == []
    [dead] = queue.dead_letters()
    assert (dead.job_id, dead.body, dead.receive_count) == (job_id, {"a": 1}, 1)
    assert dead.error == "EncryptedFile: password-protected PDF"
    assert (dead.first_seen, dead.last_seen) == (T0, T0 + 3)


def test_sqs_dead_letter_by_receive_count(make_queue: Any) -> None:
    """SQS moves a job to the dead-letter queue itself once it was received
    maxReceiveCount times, whether it was released or its lease ran out."""
    queue = make_queue(max_receives=2)
    assert queue.max_receives == 2
    released, expired = queue.send({"r": 1}), queue.send({"e": 1})
    for attempt in (1, 2):
        leases = {x.job_id: x for x in queue.receive(max_jobs=5, visibility_timeout=1)}
        assert sorted(leases) == sorted([released, expired])
        assert {x.receive_count for x in leases.values()} == {attempt}
        queue.release(leases[released], error=f"error {attempt}")
        time.sleep(1.2)  # the other lease runs out
    assert queue.receive(max_jobs=5) == []
    letters = {d.job_id: d for d in queue.dead_letters()}
    assert sorted(letters) == sorted([released, expired])
    assert letters[released].body == {"r": 1}
    assert {d.receive_count for d in letters.values()} == {2}
    assert {d.error for d in letters.values()} == {None}  # SQS keeps no reason
    assert depth(queue)["dead"] == 2


def test_sqs_depth_counts_each_state(queue: SqsQueue) -> None:
    queue.send_many([{"v": 1}, {"f": 1}, {"d": 1}, {"w": 1}])
    queue.send({"later": 1}, delay=100)
    leases = queue.receive(max_jobs=4, visibility_timeout=50)
    assert len(leases) == 4
    queue.release(leases[0])  # visible again at once
    queue.dead_letter(leases[2], "bad")
    queue.release(leases[3], delay=60)  # not visible: SQS counts it in flight
    assert queue.depth() == QueueDepth(visible=1, in_flight=2, delayed=1, dead=1)


def test_sqs_dead_letters_are_peeked_not_taken(queue: SqsQueue) -> None:
    ids = queue.send_many([{"i": i} for i in range(12)])  # more than one receive's worth
    for lease in queue.receive(max_jobs=12):
        queue.dead_letter(lease, f"bad {lease.body['i']}")
    for _ in range(2):
        assert sorted(d.job_id for d in queue.dead_letters()) == sorted(ids)
    assert len(queue.dead_letters(limit=5)) == 5
    # nothing was left hidden: the dead-letter queue shows them all as visible
    dlq = client("sqs").get_queue_attributes(
        QueueUrl=queue.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "12"


def test_sqs_foreign_messages(queue: SqsQueue) -> None:
    """Messages conveyor did not send: their MessageId is the job id; a body that is
    not a JSON object arrives whole, and goes to the dead-letter queue whole."""
    sent = client("sqs").send_message(QueueUrl=queue.url, MessageBody="not json")
    [lease] = queue.receive()
    assert lease.job_id == sent["MessageId"].replace("-", "")
    assert lease.body == {RAW_BODY: "not json"}
    queue.dead_letter(lease, "job message is not a JSON object")
    [dead] = queue.dead_letters()
    assert (dead.job_id, dead.body) == (lease.job_id, {RAW_BODY: "not json"})
    assert queue.redrive() == 1
    [back] = queue.receive()
    assert (back.job_id, back.body, back.receive_count) == (lease.job_id, lease.body, 1)


# -- opening -----------------------------------------------------------------


def test_url_forms_open_the_same_queue(moto_server: str, sqs_queue: SqsQueueInfo) -> None:
    port_url = sqs_queue.url.replace("http://", "sqs+http://")  # the endpoint from the URL
    for url in (sqs_queue.conveyor_url, f"sqs://{sqs_queue.name}", port_url):
        queue = open_queue(url, max_receives=9)
        assert isinstance(queue, SqsQueue)
        assert queue.max_receives == sqs_queue.max_receives  # the redrive policy decides
        assert queue.url == sqs_queue.url and queue.dlq_url == sqs_queue.dlq_url
        queue.close()


def test_parse_url() -> None:
    aws = parse_url("sqs+https://sqs.eu-west-1.amazonaws.com/123456789012/jobs?wait=20")
    assert aws == {
        "queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs",
        "region": "eu-west-1",
        "endpoint_url": None,
        "wait": 20,
    }
    assert parse_url("sqs://jobs?region=us-west-2")["queue_name"] == "jobs"
    legacy = parse_url("sqs+https://ap-south-1.queue.amazonaws.com/123456789012/jobs")
    assert legacy["region"] == "ap-south-1"
    for bad in ("sqs://", "sqs://a/b", "sqs://jobs?wait=60", "sqs://jobs?colour=red"):
        with pytest.raises(ConfigurationError):
            parse_url(bad)


def test_open_errors_name_the_queue(moto_server: str) -> None:
    with pytest.raises(ConfigurationError, match=r"no-such-queue.*does not exist"):
        SqsQueue(f"sqs://no-such-queue?region={REGION}")
    lonely = make_sqs_queue(redrive=False)
    with pytest.raises(ConfigurationError, match="redrive policy"):
        SqsQueue(lonely.conveyor_url)
    client("sqs").create_queue(QueueName="conveyor-test.fifo", Attributes={"FifoQueue": "true"})
    with pytest.raises(ConfigurationError, match="FIFO"):
        SqsQueue("sqs://conveyor-test.fifo")


def test_unreachable_endpoint_fails_at_start(moto_server: str) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"cannot open the queue sqs.*127\.0\.0\.1:9"):
        SqsQueue("sqs+http://127.0.0.1:9/123456789012/jobs")
    assert time.monotonic() - started < 30


def test_queue_is_a_job_queue(queue: SqsQueue) -> None:
    assert isinstance(queue, JobQueue)
    assert json.loads(json.dumps(queue.depth().as_dict())) == EMPTY
