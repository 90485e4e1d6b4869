"""AWS Lambda handler for an SQS event source mapping with ``ReportBatchItemFailures``.

Set the function's handler to ``conveyor.aws.lambda_handler.handler``. Each
SQS record's body is a job message, a receipt message or an S3 event
notification (also wrapped in an SNS envelope); it runs through the same
:class:`~conveyor.worker.Processor` as ``conveyor worker`` (by way of
:class:`~conveyor.aws.batch.BatchQueue`), then the compactor merges the deltas.
An S3 event naming several objects fans out into one job each, run in the same
invocation as children of its message: the message is done when they all are.

What comes back to SQS, per record:

* done or skipped (unchanged) — not listed: Lambda deletes the message.
* failed for good (a corrupt file, a body that is not a job) — recorded in the
  catalog as a failed document with its reason (a body that names no
  document becomes a document ``sqs://<queue>/<messageId>``), and not listed:
  retrying cannot help, and the reason is where ``conveyor documents --state
  failed`` shows it.
* failed for now (a timeout, a busy database, an unknown error below
  ``CONVEYOR_MAX_RECEIVES`` deliveries) — listed in ``batchItemFailures``:
  SQS delivers it again after the queue's visibility timeout, and its redrive
  policy dead-letters it in the end.
* not started because the invocation was running out of time — listed too,
  and left alone in the catalog: it is not a failure.
* predicted to need more than the time left, with ``CONVEYOR_LONG_QUEUE_URL``
  set — sent to the long queue (ECS workers serve it) and not listed
  (:mod:`conveyor.routing`).

The batch's records go through the processor in groups (up to
``CONVEYOR_JOB_GROUP``, as a worker's thread takes them): each runs to its
embedding, their chunks go to the model together, then each is delivered and acked
on its own (``bench/lambda_batch.py``: 2.5× the documents a second for batches of
ten short ones).

Time: a record is started only while more than ``CONVEYOR_LAMBDA_RESERVE_SECONDS``
plus the longest record so far (in this container, from its start to its end,
its group's model call included) remain; the first record of an invocation needs
only the reserve, so every batch makes progress. The
reserve is for merging and replying. The compactor then merges what is pending, in every
collection, and stops (after the batch in hand) when the reserve is nearly
used up. Deltas left pending — the time ran out, or another compactor holds
a collection's lock — are merged by the next invocation of any instance, or by
``conveyor compactor``; their documents stay ``running`` (stage ``merge``)
until then. The compactor's lock makes concurrent instances safe.

Reuse: the settings (from the environment), the connections and the model
are built on the first invocation and kept at module level for the next
ones, as Lambda keeps the process warm.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import routing, tracing
from ..compactor import Compactor
from ..components import Components
from ..documents import Documents
from ..embedding import LocalModel
from ..exceptions import ConfigurationError, PermanentError, safe_summary
from ..ids import document_id
from ..queue import Lease
from ..settings import Settings
from ..worker import Outcome, Processor
from .batch import BatchQueue

log = logging.getLogger(__name__)

MERGE_WAIT_SECONDS = 3.0
"""How long to wait for a collection whose lock another compactor holds."""


@dataclass
class Warm:
    """What one Lambda container keeps between invocations."""

    components: Components
    compactor: Compactor
    worker_id: str
    reserve: float
    longest: float = 0.0
    """Seconds the slowest record has taken in this container."""
    invocations: int = 0
    done: int = 0
    failed: int = 0


_warm: Warm | None = None
_warm_lock = threading.Lock()


def warm(settings: Settings | None = None, *, embedder: LocalModel | None = None) -> Warm:
    """The container's shared state, built on the first call: settings from the
    environment (``CONVEYOR_HOME`` defaults to a folder under /tmp, the only
    writable place in Lambda), the backends opened — so a wrong URL fails here,
    naming it — and the model loaded. Later calls return the same object.
    ``settings``/``embedder`` are for tests and for wrappers that build their own."""
    global _warm
    with _warm_lock:
        if _warm is not None:
            return _warm
        if settings is None:
            try:
                settings = Settings()
            except Exception as exc:  # pydantic's ValidationError: a bad variable
                raise ConfigurationError(f"invalid setting: {safe_summary(exc, 600)}") from None
            if "CONVEYOR_HOME" not in os.environ:
                settings = settings.with_home(Path(tempfile.gettempdir()) / "conveyor-data")
        settings.home.mkdir(parents=True, exist_ok=True)
        components = Components(settings, local_embedder=embedder)
        components.catalog  # noqa: B018 - open the backends now: a bad URL fails at start-up
        components.blobs  # noqa: B018
        components.vectors  # noqa: B018
        components.tokenizer  # noqa: B018
        if settings.remote_embedder:  # a provider embeds: only the tokenizer is local
            components.query_embedder  # noqa: B018 - a wrong embedder URL fails at start-up
        elif not settings.embedding_url:  # the service's fallback loads only when needed
            components.local_embedder.load()
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "lambda")
        stream = os.environ.get(
            "AWS_LAMBDA_LOG_STREAM_NAME", f"{socket.gethostname()}:{os.getpid()}"
        )
        _warm = Warm(
            components=components,
            compactor=components.compactor(batch=8),
            worker_id=f"{name}:{stream}",
            reserve=settings.lambda_reserve_seconds,
        )
        return _warm


def reset() -> None:
    """Close and forget the shared state (tests; a wrapper changing settings)."""
    global _warm
    with _warm_lock:
        if _warm is not None:
            _warm.components.close()
        _warm = None


class Clock:
    """Seconds left in this invocation, from the Lambda context (none: no limit)."""

    def __init__(self, context: Any) -> None:
        self._remaining = getattr(context, "get_remaining_time_in_millis", None)

    def left(self) -> float:
        if self._remaining is None:
            return math.inf
        return float(self._remaining()) / 1000.0


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Process an SQS batch; returns ``{"batchItemFailures": [{"itemIdentifier": id}]}``
    naming the records SQS should deliver again (see the module docstring)."""
    state = warm()
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise ConfigurationError(
            "not an SQS event (no 'Records' list): conveyor's Lambda handler expects an SQS "
            "event source mapping with ReportBatchItemFailures"
        )
    try:
        return Batch(state, Clock(context)).run(records)
    finally:  # the runtime may freeze the process before a batch timer sends the spans
        tracing.flush()


class Batch:
    """One invocation: the records, what became of each, and the merge."""

    def __init__(self, state: Warm, clock: Clock) -> None:
        self.state, self.clock = state, clock
        self.c = state.components
        self.queue = BatchQueue(max_receives=self.c.settings.max_receives)
        self.order: list[str] = []  # message ids, as delivered
        self.settled: set[str] = set()  # bad messages recorded
        self.unrecorded: set[str] = set()  # bad messages the catalog did not take
        self.records: dict[str, dict[str, Any]] = {}

    def run(self, records: list[Any]) -> dict[str, list[dict[str, str]]]:
        state = self.state
        state.invocations += 1
        self._beat("running")
        for record in records:
            self._accept(record)
        counts = self._process()
        merged = self._merge()
        # released for a retry, not started (or a job it fanned out into was not), its
        # handling broke before the processor settled it, or bad but not recorded
        again = self.queue.unfinished() | self.unrecorded
        retry = [mid for mid in self.order if mid in again and mid not in self.settled]
        state.done += counts["done"]
        state.failed += counts["failed"]
        self._beat("stopped")
        log.info(
            "batch of %d: %d done, %d failed, %d to retry (%d not started); "
            "%d deltas merged; %.1fs left",
            len(self.order),
            counts["done"],
            counts["failed"],
            len(retry),
            counts["unstarted"],
            merged,
            self.clock.left(),
            extra={"worker": state.worker_id},
        )
        return {"batchItemFailures": [{"itemIdentifier": mid} for mid in retry]}

    # -- intake ----------------------------------------------------------

    def _accept(self, record: Any) -> None:
        mid = record.get("messageId") if isinstance(record, dict) else None
        if not isinstance(mid, str) or not mid:
            log.error("SQS record without a messageId, ignored: %s", safe_summary(str(record)))
            return
        if mid in self.records:
            return  # the same message twice in one batch: once is enough
        self.order.append(mid)
        self.records[mid] = record
        try:
            body = decode_body(record.get("body"))
        except PermanentError as exc:
            self._bad_message(mid, safe_summary(exc))
            return
        attributes = record.get("attributes") or {}
        try:
            received = int(attributes.get("ApproximateReceiveCount", 1))
        except (TypeError, ValueError):
            received = 1
        self.queue.deliver(mid, body, previous_receives=received - 1)

    def _bad_message(self, mid: str, reason: str) -> None:
        """A message that names no document: recorded as a failed document of its
        own, so the reason shows where every other failure does."""
        record = self.records[mid]
        source = message_uri(record)
        collection = self.c.settings.collection
        doc_id = document_id(collection, source)
        try:
            documents = Documents(self.c.catalog)
            documents.queued([(doc_id, collection, source)], "adhoc")
            documents.failed(
                doc_id,
                reason,
                "permanent",
                metadata={"message_id": mid, "body": safe_summary(str(record.get("body")), 1000)},
            )
        except Exception as exc:  # could not record it: let SQS bring it back
            log.warning(
                "could not record a bad message, it will be retried: %s",
                safe_summary(exc),
                extra={"job": mid},
            )
            self.unrecorded.add(mid)
            return
        log.info("bad message: %s", reason, extra={"job": mid, "document": doc_id})
        self.settled.add(mid)

    # -- work ------------------------------------------------------------

    def _process(self) -> dict[str, int]:
        """The batch's jobs in groups (:meth:`Processor.process_many`: their chunks go
        to the model together), each record begun only while the time it may take is
        left (the module's docstring); returns the counts."""
        s, state = self.c.settings, self.state
        # the processor acks into this batch: SQS itself is Lambda's to answer
        processor = Processor(self.c.pipeline(), self.queue)
        counts = {"done": 0, "failed": 0, "unstarted": 0, "moved": 0}
        begun = refused = 0
        out_of_time = False
        began: dict[str, float] = {}  # when each record began: its time guards the next
        checked: list[float] = []  # the time left the loop found before a group, unused yet

        def begin(lease: Lease) -> bool:
            """Whether to start ``lease`` now: a record moved to the long queue, or
            one the time left cannot hold, is not (the latter goes back to SQS)."""
            nonlocal begun, refused, out_of_time
            left = checked.pop() if checked else self.clock.left()
            # the first record needs only the reserve (the loop checked it): a container
            # whose slowest record ran close to the timeout must still make progress
            if begun and left <= state.reserve + state.longest:
                out_of_time = True  # left leased, unsettled: listed for SQS to redeliver
                refused += 1
                return False
            moved = routing.move_if_long(self.c, lease.body, room=left - state.reserve)
            if moved is not None:  # predicted past the time left: the long queue has it
                self.queue.ack(lease)
                log.info(
                    "predicted %.0fs: moved to the long queue", moved, extra={"job": lease.job_id}
                )
                counts["moved"] += 1
                return False
            begun += 1
            began[lease.job_id] = time.monotonic()
            self.queue.current = lease  # jobs it fans out into belong to it
            return True

        def settle(lease: Lease, ended: Outcome | Exception) -> None:
            self.queue.current = None
            if lease.job_id in began:  # from its start to its end, its group's model call in
                state.longest = max(state.longest, time.monotonic() - began.pop(lease.job_id))
            if isinstance(ended, Exception):  # failing the job failed too: SQS brings it back
                log.error(
                    "job handling failed: %s",
                    safe_summary(ended),
                    exc_info=ended,
                    extra={"job": lease.job_id},
                )
                ended = Outcome(None, "retry", error=safe_summary(ended))
            fate = self.queue.fates.get(lease.job_id)
            if (
                fate is not None
                and fate.state == "dead"
                and ended.document_id is None
                and lease.job_id in self.records  # not a job an S3 event fanned out into
            ):
                self._bad_message(lease.job_id, fate.error or "not a job message")
            if ended.status in ("merge", "skipped"):
                counts["done"] += 1
            elif ended.status == "failed":
                counts["failed"] += 1

        while not out_of_time:
            needed = state.reserve + (state.longest if begun else 0.0)
            left = self.clock.left()
            if left <= needed:
                out_of_time = True
                break
            leases = self.queue.receive(s.job_group, visibility_timeout=s.visibility_timeout)
            if not leases:
                return counts
            checked[:] = [left]  # the group's first record: just checked
            try:
                processor.process_many(leases, settle, begin=begin)
            except Exception as exc:  # the group's handling broke: SQS brings back the rest
                log.error("job group handling failed: %s", safe_summary(exc), exc_info=True)
                break
            finally:
                self.queue.current = None
        counts["unstarted"] = refused + self.queue.depth().visible
        if counts["unstarted"]:
            log.warning(
                "%.1fs left, %.1fs needed to start another record: %d returned unstarted",
                self.clock.left(),
                state.reserve + state.longest,
                counts["unstarted"],
                extra={"worker": state.worker_id},
            )
        return counts

    # -- merge -----------------------------------------------------------

    def _merge(self) -> int:
        """Run the compactor in the time left: until nothing is pending, the
        reserve is nearly used up, or the only pending collections are locked
        by another compactor (which then merges them) for a few seconds."""
        budget = self.clock.left() - self.state.reserve / 4
        if budget <= 0:
            return 0
        stop, timer = threading.Event(), None
        if math.isfinite(budget):  # stops a merge in the batch in hand, too
            timer = threading.Timer(budget, stop.set)
            timer.daemon = True
            timer.start()
        try:
            return self.state.compactor.drain(
                stop, deadline=time.monotonic() + budget, wait_locked=MERGE_WAIT_SECONDS
            )
        finally:
            if timer is not None:
                timer.cancel()

    def _beat(self, status: str) -> None:
        state = self.state
        try:
            self.c.catalog.worker_beat(
                state.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                concurrency=1,
                state=status,
                in_flight=self.queue.depth().in_flight,
                jobs_done=state.done,
                jobs_failed=state.failed,
            )
        except Exception as exc:  # status is best effort
            log.warning("worker heartbeat failed: %s", safe_summary(exc))


def decode_body(text: Any) -> dict[str, Any]:
    """The JSON object an SQS body holds; :class:`PermanentError` when it is none.
    What the object means (a job, a receipt, an S3 event, an SNS envelope around
    one) is the processor's business, as for any queue."""
    if not isinstance(text, str):
        raise PermanentError("SQS message has no body")
    return _json_object(text, "message body")


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PermanentError(
            f"{what} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
            f"{safe_summary(text, 80)}"
        ) from None
    if not isinstance(data, dict):
        raise PermanentError(f"{what} is JSON but not an object: {safe_summary(text, 80)}")
    return data


def message_uri(record: dict[str, Any]) -> str:
    """``sqs://<queue-name>/<messageId>``: a name for a message that names no document."""
    arn = str(record.get("eventSourceARN") or "")
    queue = arn.rsplit(":", 1)[-1] if arn.startswith("arn:") else "queue"
    return f"sqs://{queue}/{record.get('messageId')}"


__all__ = ["Batch", "Clock", "Warm", "decode_body", "handler", "reset", "warm"]
