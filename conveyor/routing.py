"""Per-job routing: jobs predicted to run long go to a second queue.

With ``CONVEYOR_LONG_QUEUE_URL`` set, intake predicts each job's seconds from
its input — kind and size, a PDF's pages, a recording's minutes (read from the
file's header: :func:`probe`) — times the rate measured on earlier jobs of that
kind (:class:`Rates`, from the catalog's measurements; :data:`DEFAULT_RATES`
until some are measured), and sends the jobs predicted past
``CONVEYOR_LONG_JOB_SECONDS`` (default 600) to the long queue. ECS workers serve
the long queue, Lambda the short one. The prediction rides in the job message
(``options.predicted_seconds``), so the Lambda handler can also move a job to
the long queue when it sees the job cannot finish in the invocation's remaining
time, instead of failing it (:mod:`conveyor.aws.lambda_handler`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from .exceptions import ConveyorError, safe_summary
from .jobs import OBJECT_SIZE

log = logging.getLogger(__name__)

PREDICTED = "predicted_seconds"
"""The job option that carries the prediction."""

UNITS = {"audio": "minute", "pdf": "page", "image": "page"}
"""What a job's work is counted in, by kind (MB of input for the others)."""

DEFAULT_RATES = {"audio": 20.0, "pdf": 1.0, "image": 3.0, "*": 2.0}
"""Seconds per unit until jobs of the kind are measured: a minute of audio, a page,
a MB (conservative: a CPU worker with Whisper tiny.en, OCR on scanned pages)."""

EXTENSIONS = {
    ".pdf": "pdf",
    ".mp3": "audio",
    ".wav": "audio",
    ".m4a": "audio",
    ".ogg": "audio",
    ".flac": "audio",
    ".mp4": "audio",
    ".webm": "audio",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}
"""Kinds guessed from a name, where the bytes are not at hand (an S3 object)."""

MEASURED = 500
"""Measured jobs (the newest) rates are taken from."""


@dataclass(frozen=True)
class Probe:
    """What is known of an input before it is processed."""

    kind: str
    size: int
    pages: int | None = None
    audio_seconds: float | None = None

    def units(self) -> float:
        """Its work in its kind's unit (:data:`UNITS`)."""
        return units(self.kind, self.size, self.pages, self.audio_seconds)


def units(kind: str, size: int, pages: int | None, audio_seconds: float | None) -> float:
    if kind == "audio":
        # unknown length: as if 128 kbit/s
        return (audio_seconds if audio_seconds is not None else size / 16_000) / 60
    if kind in UNITS:
        return float(pages) if pages else max(1.0, size / 100_000)  # ~100 kB a page
    return size / 2**20


def probe(source: str, size: int | None = None) -> Probe:
    """Kind, size, pages or minutes of ``source``: read from a local file's first bytes
    and header; for another URI, guessed from its name and ``size``."""
    path = Path(urlparse(source).path) if source.startswith("file://") else None
    if path is None or not path.is_file():
        kind = EXTENSIONS.get(PurePosixPath(urlparse(source).path).suffix.lower(), "text")
        return Probe(kind, size or 0)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(65_536)
    try:
        from .extract.sniff import sniff

        kind = sniff(head, name=path.name)
    except ConveyorError:
        return Probe(EXTENSIONS.get(path.suffix.lower(), "text"), size)
    if kind == "pdf":
        return Probe(kind, size, pages=_pdf_pages(path))
    if kind == "audio":
        return Probe(kind, size, audio_seconds=_audio_seconds(path))
    return Probe(kind, size)


def _pdf_pages(path: Path) -> int | None:
    try:
        from pypdf import PdfReader

        return len(PdfReader(path).pages)
    except Exception:  # unreadable here: the job will say why; predict from its size
        return None


def _audio_seconds(path: Path) -> float | None:
    try:
        import av

        with av.open(str(path)) as container:
            if container.duration is not None:
                return float(container.duration) / 1_000_000  # av.time_base
            stream = container.streams.audio[0]
            if stream.duration is None or stream.time_base is None:
                return None
            return float(stream.duration * stream.time_base)
    except Exception:
        return None


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work by kind, measured (or the defaults)."""

    per_unit: dict[str, float]
    measured: dict[str, int]
    """Jobs each rate was measured on (0: the default)."""

    @classmethod
    def from_measurements(cls, rows: Sequence[dict[str, Any]]) -> Rates:
        seconds: dict[str, float] = {}
        work: dict[str, float] = {}
        jobs: dict[str, int] = {}
        for r in rows:
            kind = r.get("kind")
            if not kind or r.get("outcome") != "merge" or not r.get("seconds"):
                continue
            amount = units(
                kind, int(r.get("input_bytes") or 0), r.get("pages"), r.get("audio_seconds")
            )
            if amount <= 0:
                continue
            seconds[kind] = seconds.get(kind, 0.0) + float(r["seconds"])
            work[kind] = work.get(kind, 0.0) + amount
            jobs[kind] = jobs.get(kind, 0) + 1
        rates = dict(DEFAULT_RATES)
        rates.update({k: seconds[k] / work[k] for k in seconds})
        return cls(rates, jobs)

    @classmethod
    def of(cls, catalog: Any) -> Rates:
        return cls.from_measurements(catalog.measurements(limit=MEASURED))

    def predict(self, found: Probe) -> float:
        """Seconds the job should take."""
        return self.per_unit.get(found.kind, self.per_unit["*"]) * found.units()


def predicted(message: dict[str, Any], catalog: Any) -> float | None:
    """A job message's predicted seconds: the one intake wrote, else one made now (from
    the file when it is local, else its name); None for a message that is no job."""
    options = message.get("options")
    if isinstance(options, dict) and isinstance(options.get(PREDICTED), int | float):
        return float(options[PREDICTED])
    source = message.get("source")
    if not isinstance(source, str):
        return None
    try:
        return Rates.of(catalog).predict(probe(source, _size(message)))
    except OSError:
        return None


def move_if_long(components: Any, message: dict[str, Any], room: float) -> float | None:
    """With a long queue configured: send ``message`` there when it is predicted to need
    more than ``room`` seconds (the Lambda handler's time left, less its reserve).
    Returns the prediction when it was moved, else None (also when sending failed: it
    is then tried where it is)."""
    if not components.settings.long_queue_url:
        return None
    seconds = predicted(message, components.catalog)
    if seconds is None or seconds <= room:
        return None
    try:
        components.long_queue.send(message)
    except Exception as exc:
        log.warning("moving a long job failed, trying it here: %s", safe_summary(exc))
        return None
    return seconds


def _size(message: dict[str, Any]) -> int | None:
    """The input's size when the message says it (an S3 event does)."""
    options = message.get("options")
    size = options.get(OBJECT_SIZE) if isinstance(options, dict) else None
    return size if isinstance(size, int) else None


def route(
    messages: list[dict[str, Any]], rates: Rates, threshold: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(short, long)``: each message with its prediction in ``options``, split at
    ``threshold`` seconds. A message whose input cannot be probed is short."""
    short: list[dict[str, Any]] = []
    long: list[dict[str, Any]] = []
    for message in messages:
        try:
            seconds = rates.predict(probe(str(message.get("source", "")), _size(message)))
        except OSError as exc:
            log.warning("cannot predict %s: %s", message.get("source"), safe_summary(exc))
            short.append(message)
            continue
        routed = {
            **message,
            "options": {**message.get("options", {}), PREDICTED: round(seconds, 1)},
        }
        (long if seconds > threshold else short).append(routed)
    return short, long


def send(components: Any, messages: list[dict[str, Any]]) -> None:
    """Send intake's jobs: all to the queue, or — with a long queue configured — the
    long ones there."""
    s = components.settings
    if not s.long_queue_url or not messages:
        components.queue.send_many(messages)
        return
    short, long = route(messages, Rates.of(components.catalog), s.long_job_seconds)
    if short:
        components.queue.send_many(short)
    if long:
        components.long_queue.send_many(long)
        log.info(
            "%d job(s) predicted past %gs sent to the long queue", len(long), s.long_job_seconds
        )
