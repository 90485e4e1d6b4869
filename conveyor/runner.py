"""Workers and the compactor in this process: start, wait, stop with grace, drain.

One runner for every place that runs them — ``conveyor ingest`` (until the
queue is empty), ``conveyor worker`` and ``conveyor serve --workers`` (until
stopped). The Lambda handler and ``run-job`` merge with
:meth:`~conveyor.compactor.Compactor.drain` instead, within their time.

A full disk (:class:`~conveyor.exceptions.NoSpace`) stops the workers and the
compactor; :func:`run` then raises it, naming the path, and the CLI exits non-zero.
Nothing is lost: jobs go back to the queue and deltas stay pending.

Stopping: :func:`stop_on_signals` turns the first SIGTERM or Ctrl-C into
``stop`` (take no more jobs, let those in flight finish within the grace
period) and the second into ``hurry`` (release them now). Jobs still in
flight when the grace period ends go back to the queue, visible at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .components import Components

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    done: int
    """Jobs this process finished (merged, or unchanged and skipped)."""
    failed: int
    released: int
    """Jobs handed back to the queue unfinished when the process stopped."""

    def as_dict(self) -> dict[str, int]:
        return {"done": self.done, "failed": self.failed, "released": self.released}


def run(
    components: Components,
    *,
    concurrency: int,
    stop: threading.Event,
    hurry: threading.Event | None = None,
    grace: float = 30.0,
    until_idle: bool = False,
    compactor: bool = True,
    drain: bool = False,
    progress: Callable[[], None] | None = None,
) -> RunResult:
    """Run ``concurrency`` worker threads (and the compactor, unless ``compactor`` is
    False) until ``stop`` is set — or, with ``until_idle``, until the queue is empty.
    With ``drain`` the compactor then merges everything pending before this returns;
    without, it stops after the batch in hand. ``progress`` is called a few times a
    second while it runs."""
    tick = progress or (lambda: None)
    c = components
    c.open_all()
    c.tokenizer  # noqa: B018 - fail on a bad model before taking jobs
    writer = c.compactor() if compactor else None
    pool = c.worker_pool(
        concurrency=concurrency, on_delta=writer.wake.set if writer is not None else None
    )
    writer_stop = threading.Event()
    writer_thread = None
    if writer is not None:
        writer_thread = threading.Thread(
            target=writer.run,
            args=(writer_stop,),
            kwargs={"drain": drain},
            name="conveyor-compactor",
            daemon=True,
        )
        writer_thread.start()
    pool.start(until_idle=until_idle)
    log.info("worker started", extra={"worker": pool.worker_id})
    released = 0
    try:
        while not pool.join(timeout=0.2) and not stop.is_set():
            if writer is not None and writer.full is not None:
                break  # nothing more can be merged: take no more work
            tick()
        released = pool.shutdown(grace, hurry=hurry)
    except KeyboardInterrupt:  # the library used without stop_on_signals
        pool.shutdown(min(grace, 10.0), hurry=hurry)
        raise
    finally:
        pool.close()
        if writer is not None and writer_thread is not None:
            writer_stop.set()
            writer.wake.set()
            if drain:
                while writer_thread.is_alive():
                    writer_thread.join(0.2)
                    tick()
            else:
                writer_thread.join(grace)
    tick()
    log.info("worker stopped", extra={"worker": pool.worker_id})
    full = pool.full or (writer.full if writer is not None else None)
    if full is not None:  # jobs went back to the queue, deltas stay pending: nothing lost
        raise full
    return RunResult(pool.jobs_done, pool.jobs_failed, released)


def stop_on_signals(say: Callable[[str], None]) -> tuple[threading.Event, threading.Event]:
    """SIGTERM / Ctrl-C set ``stop``; a second one sets ``hurry`` too. ``say`` tells the
    person at the terminal what happens."""
    stop, hurry = threading.Event(), threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            hurry.set()
            say("stopping now: releasing jobs in flight")
        else:
            stop.set()
            say(
                f"{signal.Signals(signum).name}: finishing jobs in flight "
                "(again to release them now)"
            )

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop, hurry
