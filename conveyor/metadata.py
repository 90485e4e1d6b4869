"""A user's metadata for a document (an upload's ``metadata`` field, ``submit(metadata=)``):
checked before anything is stored, so that what the catalog, the queue and the vector
store must keep is plain JSON they all accept.

The rules: a JSON object, nested at most :data:`MAX_DEPTH` deep, at most
:data:`MAX_BYTES` as JSON, numbers finite (no ``NaN``/``Infinity``), every string and
key valid Unicode (no lone surrogates such as ``"\\ud800"``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .exceptions import PermanentError

MAX_DEPTH = 32
MAX_BYTES = 64 * 1024


class InvalidMetadata(PermanentError):
    """The metadata breaks a rule above; the message names which (an API answers 422)."""


def parse_metadata(raw: str) -> dict[str, Any] | None:
    """The metadata in ``raw`` JSON text (None when blank), checked."""
    if not raw.strip():
        return None
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise InvalidMetadata(f"metadata is larger than {MAX_BYTES:,} bytes of JSON")

    def refuse(constant: str) -> Any:
        raise InvalidMetadata(f"metadata holds {constant}: numbers must be finite")

    try:
        value = json.loads(raw, parse_constant=refuse)
    except RecursionError:
        raise InvalidMetadata(f"metadata is nested more than {MAX_DEPTH} deep") from None
    except ValueError as exc:
        if isinstance(exc, InvalidMetadata):  # pragma: no cover - json re-raises as is
            raise
        raise InvalidMetadata(f"metadata is not valid JSON: {exc}") from None
    return check_metadata(value)


def check_metadata(value: Any) -> dict[str, Any]:
    """``value`` if it is metadata conveyor can keep, else :class:`InvalidMetadata`."""
    if not isinstance(value, dict):
        raise InvalidMetadata("metadata must be a JSON object")
    stack: list[tuple[Any, int, str]] = [(value, 1, "metadata")]
    while stack:  # iterative: a deep value cannot overflow the check itself
        item, depth, where = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidMetadata(f"metadata is nested more than {MAX_DEPTH} deep")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str):
                    _unicode(key, f"a key in {where}")
                elif isinstance(item, dict):
                    raise InvalidMetadata(f"{where} has a key that is not a string")
                stack.append((child, depth + 1, f"{where}[{key!r:.40}]"))
        elif isinstance(item, str):
            _unicode(item, where)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidMetadata(f"{where} is {item}: numbers must be finite")
        elif item is not None and not isinstance(item, bool | int | float):
            raise InvalidMetadata(f"{where} is a {type(item).__name__}, not a JSON value")
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > MAX_BYTES:
        raise InvalidMetadata(f"metadata is {size:,} bytes of JSON, over {MAX_BYTES:,}")
    return value


def _unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMetadata(
            f"{where} is not valid Unicode (a lone surrogate such as \\ud800)"
        ) from None
