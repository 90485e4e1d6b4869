"""One root exception, split into permanent (dead-letter now) and transient (retry).

Anything else raised while a job runs is *unknown*: it is retried with backoff
until the queue's ``max_receives`` is reached, then dead-lettered.

Messages are meant for people: one line, saying what went wrong and what to do.
Never put secrets (connection strings, response bodies) into them; see
:func:`safe_summary`.
"""

from __future__ import annotations

import re


class ConveyorError(Exception):
    """Root of every error conveyor raises on purpose."""


class ConfigurationError(ConveyorError):
    """A setting is wrong or a backend cannot be reached at start-up."""


class PermanentError(ConveyorError):
    """Retrying will not help: the job goes to the dead-letter queue at once."""

    kind = "permanent"


class TransientError(ConveyorError):
    """Likely to succeed later (a timeout, a busy server): retried with backoff."""

    kind = "transient"


class BackendUnavailable(TransientError):
    """A database, queue or store that was reachable is not now (stopped, restarted,
    the network down): retried; the API answers 503 with ``Retry-After``."""


class UnsupportedType(PermanentError):
    """The bytes are not a format conveyor can extract (yet)."""


class CorruptFile(PermanentError):
    """The file claims a format but cannot be parsed (truncated, damaged)."""


class EncryptedFile(PermanentError):
    """The file is password-protected."""


class EmptyDocument(PermanentError):
    """The file is empty or holds no extractable text."""


class DocumentTooLarge(PermanentError):
    """The document holds more text or chunks than one document may
    (``CONVEYOR_MAX_TEXT_CHARS``, ``CONVEYOR_MAX_CHUNKS``, ``CONVEYOR_MAX_PDF_PAGES``)."""


class SourceNotFound(PermanentError):
    """The source file or object does not exist (any more)."""


class ModelMismatch(PermanentError):
    """Vectors from a different model or dimension than the collection's."""


class MissingDependency(PermanentError):
    """A program or Python extra this input needs is not installed (Tesseract, the
    audio extra): the message says how to install it. Waiting cannot help, so the
    job is not retried; ``conveyor dlq redrive`` runs it again once it is there."""

    kind = "configuration"


class NoSpace(ConveyorError):
    """A disk (or the database's) is full: a worker stops taking work and says where;
    nothing is lost (jobs in flight go back to the queue, deltas stay pending)."""


_NO_SPACE_ERRNOS = frozenset({28, 122})  # ENOSPC, EDQUOT
_NO_SPACE_TEXT = ("database or disk is full", "no space left on device", "could not extend file")


def no_space(exc: BaseException, where: str) -> NoSpace | None:
    """A :class:`NoSpace` when ``exc`` (or what caused it) says a disk is full, else
    None. ``where``: what to name when the error does not say its path (the database)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NoSpace):
            return current
        if isinstance(current, OSError) and current.errno in _NO_SPACE_ERRNOS:
            path = current.filename or where
            return NoSpace(f"no space left on the disk holding {path}; free some, then run again")
        text = str(current).lower()
        if getattr(current, "sqlstate", None) == "53100" or any(t in text for t in _NO_SPACE_TEXT):
            return NoSpace(
                f"no space left for {where} ({safe_summary(current, 120)}); free some, "
                "then run again"
            )
        current = current.__cause__ or current.__context__
    return None


_SECRET_PATTERNS = [
    # scheme://user:password@host -> scheme://user:***@host; the password runs to the
    # last "@" (people write "p@ss" unencoded) and the user may be empty
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)\S*(?=@)"), r"\g<pre>***"),
    # key=value pairs that look like credentials
    (
        re.compile(
            r"(?i)(?P<k>(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
            r"aws_secret_access_key|authorization)\s*[=:]\s*)(?:\"[^\"]*\"|'[^']*'|\S+)"
        ),
        r"\g<k>***",
    ),
    (re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer ***"),
]


def safe_summary(exc: BaseException | str, limit: int = 300) -> str:
    """A one-line, bounded, credential-masked description of an error."""
    if isinstance(exc, BaseException):
        text = str(exc) or exc.__class__.__name__
        if not isinstance(exc, ConveyorError):
            text = f"{exc.__class__.__name__}: {text}"
    else:
        text = exc
    text = " ".join(text.split())
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def classify(exc: BaseException) -> str:
    """``"configuration"`` (a missing program or extra), ``"permanent"``,
    ``"transient"`` or ``"unknown"``."""
    if isinstance(exc, MissingDependency):
        return "configuration"
    if isinstance(exc, PermanentError):
        return "permanent"
    if isinstance(exc, (TransientError, TimeoutError, ConnectionError)):
        return "transient"
    return "unknown"
