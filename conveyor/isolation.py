"""Extraction in a child process, with a wall-clock limit and a memory limit.

Parsing hostile files is where a worker can hang (a PDF whose parser loops,
quadratic HTML) or balloon (a decompression bomb). Each worker slot keeps one
long-lived child process (started with ``spawn``, so it is safe beside
threads and a loaded model); the parent sends it the file's path (or, for
inputs that are not a local file, its bytes) and the chunking plan, and the
child reads, extracts and chunks under ``RLIMIT_AS``, so a bomb or a huge text
raises ``MemoryError`` there instead of taking the machine, and the worker
only ever receives a document's chunks, capped by ``CONVEYOR_MAX_CHUNKS``.

Small plain text is the exception: a local file of at most
:data:`INLINE_BYTES` whose bytes sniff as ``text`` is decoded and chunked in
the worker's own thread. Its extractor is a strict decode and a few linear
passes, with no parser to hang or balloon; the pipe round trip it saves is a
third of what a one-chunk document costs the pipeline besides the model.

Time: the parent waits at most ``timeout`` seconds between two signs of life
(a progress report: a page OCR'd, a minute of audio transcribed), and at most
``total_timeout`` seconds in all, however often the child reports. A child
that times out or dies is killed and replaced; the document fails alone, with
a reason.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .chunking import ChunkPlan
from .embedding import Tokenizer
from .exceptions import ConveyorError, PermanentError
from .extract import Extracted, Input, extract
from .extract.sniff import sniff
from .measure import note, peak_rss_mb, reset_peak

log = logging.getLogger(__name__)

INLINE_BYTES = 64 * 1024
"""Local files up to this size that sniff as plain text are extracted in the worker."""
INLINE_KINDS = frozenset({"text"})
"""Kinds whose extractor runs no parser (see the module's docstring)."""


class ExtractionTimeout(PermanentError):
    """Extraction ran past its wall-clock limit."""


class ExtractionMemoryLimit(PermanentError):
    """Extraction needed more memory than allowed."""


class ExtractorCrashed(PermanentError):
    """The extraction process died (a crash in a parser, or killed by the OS)."""


def _child(requests: Connection, replies: Connection, memory_bytes: int | None) -> None:
    """The child's loop: receive (data, name, kind, options), send back a result (after
    its peak memory for the document, for :mod:`conveyor.measure`)."""
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    threading.Thread(target=_orphan_watch, args=(os.getppid(),), daemon=True).start()
    from .logs import configure

    configure(logging.ERROR)  # parsers' chatter stays out of the worker's output
    tokenizer: Tokenizer | None = None  # sent with the first plan, kept for the next
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if request is None:
            return
        if request == "ping":
            replies.send("pong")
            continue
        data, name, kind, options, plan = request
        if plan is not None:
            if plan.tokenizer is not None:
                tokenizer = plan.tokenizer
            plan = replace(plan, tokenizer=tokenizer)

        def progress(message: str) -> None:
            replies.send(("progress", message))

        reset_peak()  # this document's peak memory, not the child's life's
        try:
            result = extract(
                data, name=name, kind=kind, options=options, progress=progress, chunking=plan
            )
            replies.send(("peak", peak_rss_mb()))
            replies.send(("ok", result))
        except MemoryError:
            replies.send(("memory", None))
        except ConveyorError as exc:
            replies.send(("peak", peak_rss_mb()))
            replies.send(("error", exc))
        except BaseException as exc:  # report, keep serving
            replies.send(("error", PermanentError(f"{type(exc).__name__}: {exc}")))


def _orphan_watch(parent: int) -> None:
    """End the child when its worker is gone (SIGKILLed), even mid-parse."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)  # this child and any Tesseract it started


class _Slot:
    """One child process (``python -m conveyor.isolation``) and the pipes to it.

    A plain subprocess rather than multiprocessing: it needs nothing from the
    parent's ``__main__`` and is safe to start beside threads.
    """

    def __init__(self, memory_bytes: int | None) -> None:
        child_in, parent_out = os.pipe()
        parent_in, child_out = os.pipe()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor.isolation",
                str(child_in),
                str(child_out),
                str(memory_bytes or 0),
            ],
            pass_fds=(child_in, child_out),
            stdin=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,  # its own process group: Tesseract dies with it
        )
        os.close(child_in)
        os.close(child_out)
        self.requests = Connection(parent_out, readable=False)
        self.replies = Connection(parent_in, writable=False)
        self.tokenizer: int | None = None
        """``id`` of the tokenizer this child holds (sent once, not with every file)."""
        # wait for start-up (imports) here, so it never counts against a document
        try:
            self.requests.send("ping")
            ok = self.replies.poll(120) and self.replies.recv() == "pong"
        except (EOFError, OSError):
            ok = False
        if not ok:
            self.kill()
            raise ConveyorError("could not start the extraction process")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # the child and its Tesseract
            except ProcessLookupError:
                pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap
            pass
        self.requests.close()
        self.replies.close()


def _small_text(data: Input, name: str | None, kind: str | None) -> bytes | None:
    """The bytes of a local file small enough to extract in the worker, when they are
    plain text (else None: the child reads, sniffs and extracts). Whatever goes wrong
    reading or sniffing here, the child meets again and reports."""
    if not isinstance(data, Path) or kind not in (None, *INLINE_KINDS):
        return None
    try:
        found = os.stat(data)
        if not stat.S_ISREG(found.st_mode) or found.st_size > INLINE_BYTES:
            return None  # a FIFO or a device could block or never end: the child's
        with open(data, "rb") as file:
            head = file.read(INLINE_BYTES + 1)  # it may have grown since
        if len(head) > INLINE_BYTES or (kind or sniff(head, name)) not in INLINE_KINDS:
            return None
    except (OSError, ConveyorError):
        return None
    return head


def _kill_all(slots: dict[int, _Slot]) -> None:
    for slot in list(slots.values()):
        slot.kill()
    slots.clear()


class IsolatedExtractor:
    """``extract`` in child processes; one per calling thread, reused across jobs.

    ``timeout`` (seconds without a progress report), ``total_timeout`` (seconds in
    all) and ``memory_mb`` may be None to switch each limit off.
    """

    def __init__(
        self,
        *,
        timeout: float | None,
        memory_mb: int | None,
        total_timeout: float | None = None,
    ) -> None:
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.memory_mb = memory_mb
        self._slots: dict[int, _Slot] = {}
        self._lock = threading.Lock()
        # children die with their owner, even one that was never closed
        weakref.finalize(self, _kill_all, self._slots)

    def _slot(self) -> _Slot:
        key = threading.get_ident()
        with self._lock:
            slot = self._slots.get(key)
            if slot is None or not slot.alive():
                memory = self.memory_mb * 1024 * 1024 if self.memory_mb else None
                slot = self._slots[key] = _Slot(memory)
            return slot

    def _discard(self) -> None:
        with self._lock:
            slot = self._slots.pop(threading.get_ident(), None)
        if slot is not None:
            slot.kill()

    def extract(
        self,
        data: Input,
        name: str | None = None,
        kind: str | None = None,
        options: dict[str, Any] | None = None,
        progress: Callable[[str], None] | None = None,
        chunking: ChunkPlan | None = None,
    ) -> Extracted:
        """``extract`` (and chunking, with a plan) in this thread's child. ``timeout``
        counts from the request, and again from each progress report (a long
        recording reports as it goes), never past ``total_timeout`` from the request.
        Small plain text is extracted here instead (:data:`INLINE_BYTES`)."""
        small = _small_text(data, name, kind)
        if small is not None:
            return extract(small, name, "text", options, progress, chunking)
        slot = self._slot()
        if chunking is not None and chunking.tokenizer is not None:
            if slot.tokenizer == id(chunking.tokenizer):
                chunking = replace(chunking, tokenizer=None)
            else:
                slot.tokenizer = id(chunking.tokenizer)
        request = (data, name, kind, options or {}, chunking)
        try:
            status, payload = self._exchange(slot, request, progress)
        except BaseException:
            # anything that leaves the exchange early (KeyboardInterrupt included) may
            # leave replies in the pipe: this child must not serve the next document
            if self._slots.get(threading.get_ident()) is slot:
                self._discard()
            raise
        if status == "ok":
            return payload  # type: ignore[no-any-return,unused-ignore]
        if status == "memory":
            self._discard()  # a child that hit its limit may be fragmented; start afresh
            raise ExtractionMemoryLimit(
                f"extraction needed more than {self.memory_mb} MiB and was stopped (a "
                "decompression bomb?); raise CONVEYOR_EXTRACT_MEMORY_MB, 0 for no limit"
            )
        raise payload

    def _exchange(
        self, slot: _Slot, request: tuple[Any, ...], progress: Callable[[str], None] | None
    ) -> tuple[str, Any]:
        """Send one request; relay progress until the answer arrives."""
        deadline = time.monotonic() + self.total_timeout if self.total_timeout else None
        try:
            slot.requests.send(request)
        except (BrokenPipeError, EOFError, OSError):
            pass  # the child is gone: recv below says how
        while True:
            wait = self.timeout
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                wait = left if wait is None else min(wait, left)
            try:
                ready = slot.replies.poll(wait)
            except (EOFError, OSError):
                ready = True
            if not ready:
                self._discard()
                raise self._timed_out(deadline)
            try:
                status, payload = slot.replies.recv()
            except (EOFError, OSError):
                raise self._crashed(slot) from None
            if status == "peak":  # the child's peak memory for this document
                note(child_peak_mb=payload)
                continue
            if status != "progress":
                return status, payload
            if progress is not None:
                try:
                    progress(payload)
                except Exception as exc:  # showing progress must never break the exchange
                    log.warning("progress report failed: %s", exc)

    def _timed_out(self, deadline: float | None) -> ExtractionTimeout:
        if deadline is not None and time.monotonic() >= deadline - 0.01:
            return ExtractionTimeout(
                f"extraction took longer than {self.total_timeout:g} s in all and was "
                "stopped, though it was still making progress; the file may be hostile or "
                "very large (raise CONVEYOR_EXTRACT_TOTAL_TIMEOUT, 0 for no limit)"
            )
        return ExtractionTimeout(
            f"extraction took longer than {self.timeout:g} s without progress and was "
            "stopped; the file may be hostile or very large (raise "
            "CONVEYOR_EXTRACT_TIMEOUT, 0 for no limit)"
        )

    def _crashed(self, slot: _Slot) -> ExtractorCrashed:
        try:
            code = slot.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        self._discard()
        if code is not None and code < 0:
            detail = f"killed by signal {-code}"
        else:
            detail = f"exit code {code}"
        return ExtractorCrashed(
            f"the extraction process died ({detail}) on this file; it may be hostile or "
            "need more memory than CONVEYOR_EXTRACT_MEMORY_MB allows"
        )

    def close(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            try:
                slot.requests.send(None)
            except OSError:
                pass
            slot.kill()


if __name__ == "__main__":  # the child: python -m conveyor.isolation IN_FD OUT_FD MEMORY
    _child(
        Connection(int(sys.argv[1]), writable=False),
        Connection(int(sys.argv[2]), readable=False),
        int(sys.argv[3]) or None,
    )
