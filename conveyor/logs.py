"""Structured logs: what a log call acted on (job, document, worker…) travels as fields.

Library code logs with ``extra={"job": …, "document": …}``; this formatter
appends those fields as ``key=value`` so they show in a terminal and stay
greppable, and :class:`JsonFormatter` emits one JSON object a line for log
shippers (``CONVEYOR_LOG_FORMAT=json``).
"""

from __future__ import annotations

import json
import logging
import os

FIELDS = ("worker", "job", "document", "collection", "run", "error_kind", "model")


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = _fields(record)
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(level: int) -> None:
    """Log to stderr at ``level``, as key=value text or JSON (``CONVEYOR_LOG_FORMAT``)."""
    handler = logging.StreamHandler()
    if os.environ.get("CONVEYOR_LOG_FORMAT", "text").lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("pypdf", "httpx", "urllib3", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(max(level, logging.ERROR))
