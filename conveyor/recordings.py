"""What a recorder says about a recording: which device, when it started and ended.

A device uploads through ``POST /ingest`` (``deviceId``, ``startedAt``, ``endedAt``);
the three are kept on the document as the uploader's metadata (``device_id``,
``started_at``, ``ended_at``, ISO 8601 with the device's offset) and on each chunk,
with ``recorded_at``: the start in Unix seconds, what ``--since``/``--until``
compare. A hit in a recording with a known start shows wall-clock time beside its
offset: ``00:41–00:52`` from ``10:00:00Z`` is ``10:00:41–10:00:52``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .exceptions import ConveyorError

FIELDS = ("device_id", "started_at", "ended_at")
"""The document's metadata keys (and its chunks')."""
FORM_FIELDS = {"deviceId": "device_id", "startedAt": "started_at", "endedAt": "ended_at"}
"""What a recorder sends, and what conveyor keeps it as."""
MAX_DEVICE_ID = 128


class BadRecording(ConveyorError):
    """A recorder's field that cannot be used; ``field`` names it as the device sent it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_time(text: str, field: str, *, assume_utc: bool = False) -> datetime:
    """An ISO 8601 time (``2025-12-10T10:00:00Z``, ``…+01:00``); one without an offset
    is refused unless ``assume_utc`` (a search filter typed by a person)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRecording(
            field, f"{text[:60]!r} is not an ISO 8601 time (e.g. 2025-12-10T10:00:00Z)"
        ) from None
    if when.tzinfo is None:
        if not assume_utc:
            raise BadRecording(
                field, f"{text[:60]!r} has no time zone: add Z (UTC) or an offset like +01:00"
            )
        when = when.replace(tzinfo=UTC)
    return when


def from_form(form: Mapping[str, str]) -> dict[str, str]:
    """The recorder's fields from an upload form, checked: ``deviceId`` and
    ``startedAt`` required, ``endedAt`` optional and not before the start."""
    device = (form.get("deviceId") or "").strip()
    if not device:
        raise BadRecording("deviceId", "missing: name the device that recorded it")
    if len(device) > MAX_DEVICE_ID or not device.isprintable():
        raise BadRecording(
            "deviceId", f"use at most {MAX_DEVICE_ID} printable characters, not {device[:40]!r}"
        )
    if not (form.get("startedAt") or "").strip():
        raise BadRecording("startedAt", "missing: when the recording started (ISO 8601)")
    started = parse_time(form["startedAt"], "startedAt")
    out = {"device_id": device, "started_at": started.isoformat()}
    if (form.get("endedAt") or "").strip():
        ended = parse_time(form["endedAt"], "endedAt")
        if ended < started:
            raise BadRecording(
                "endedAt", f"{form['endedAt'][:40]} is before startedAt {form['startedAt'][:40]}"
            )
        out["ended_at"] = ended.isoformat()
    return out


def chunk_fields(metadata: Any) -> dict[str, Any]:
    """What each chunk of a document with these (uploader's) metadata carries for the
    filters: ``device_id``, ``started_at``, ``ended_at`` and ``recorded_at``. Values
    that are not what a recorder sends are left out."""
    if not isinstance(metadata, Mapping):
        return {}
    out: dict[str, Any] = {}
    device = metadata.get("device_id")
    if isinstance(device, str) and device:
        out["device_id"] = device
    for key in ("started_at", "ended_at"):
        value = metadata.get(key)
        if not isinstance(value, str):
            continue
        try:
            when = parse_time(value, key)
        except BadRecording:
            continue
        out[key] = when.isoformat()
        if key == "started_at":
            out["recorded_at"] = when.timestamp()
    return out


def wall_clock(metadata: Mapping[str, Any]) -> str | None:
    """``10:00:41–10:00:52``: a chunk's span as the time of day it was said, in the
    device's offset, when its recording's start is known."""
    started, start_s = metadata.get("started_at"), metadata.get("start_s")
    if not isinstance(started, str) or not isinstance(start_s, int | float):
        return None
    try:
        origin = parse_time(started, "started_at")
    except BadRecording:
        return None
    end_s = metadata.get("end_s")
    end_s = end_s if isinstance(end_s, int | float) else start_s
    first = origin + timedelta(seconds=float(start_s))
    last = origin + timedelta(seconds=float(end_s))
    return f"{first:%H:%M:%S}–{last:%H:%M:%S}"


def bound(text: str | None, field: str) -> float | None:
    """A ``--since``/``--until`` time as Unix seconds (no offset: UTC)."""
    if text is None or not text.strip():
        return None
    return parse_time(text, field, assume_utc=True).timestamp()
