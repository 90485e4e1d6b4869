"""API keys for ``conveyor serve``, and short-lived tokens for the live event stream.

Keys come from ``CONVEYOR_API_KEYS`` (comma-separated, so one can be rotated in
beside the old one). A request carries one in ``x-api-key`` or
``Authorization: Bearer``; every configured key is compared with
:func:`hmac.compare_digest`, so the time taken does not say how much of a guess was
right. With no keys configured everything is open, and ``conveyor serve`` listens
on 127.0.0.1 only.

A browser's ``EventSource`` cannot send headers, and a key in a URL ends up in
access logs and browser history. So the status page trades its key for an
*event token* (``POST /events/token``): ``<expiry>.<hmac>``, good for
``GET /events`` only, for :data:`TOKEN_SECONDS`. It is signed with a secret
derived from the configured keys, so every replica behind a load balancer accepts
it and rotating the keys voids it; it grants nothing but the read-only stream.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TOKEN_SECONDS = 120


def parse_keys(raw: str | None) -> list[str]:
    """The keys of ``CONVEYOR_API_KEYS``: comma-separated, blanks dropped."""
    return [k.strip() for k in (raw or "").split(",") if k.strip()]


class Keys:
    """The configured API keys; ``open`` when there are none."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]
        material = b"\0".join(sorted(self._keys))
        self._secret = hashlib.sha256(b"conveyor-event-token\0" + material).digest()

    @property
    def open(self) -> bool:
        return not self._keys

    def check(self, presented: str | None) -> bool:
        """True when ``presented`` is one of the keys (or there are none)."""
        if self.open:
            return True
        if not presented:
            return False
        # HTTP headers arrive decoded as Latin-1: a UTF-8 key sent as its bytes is those
        # bytes again once encoded back; a key typed into a client that encoded it as
        # UTF-8 text is its UTF-8
        candidates = [presented.encode("utf-8")]
        try:
            candidates.append(presented.encode("latin-1"))
        except UnicodeEncodeError:
            pass
        # compare against every key, without stopping at the first match
        found = False
        for given in candidates:
            for key in self._keys:
                found |= hmac.compare_digest(given, key)
        return found

    def from_headers(self, api_key: str | None, authorization: str | None) -> str | None:
        """The key a request presents: ``x-api-key``, else ``Authorization: Bearer``."""
        if api_key:
            return api_key.strip()
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        return None

    def _sign(self, expiry: int) -> str:
        return hmac.new(self._secret, f"events:{expiry}".encode(), hashlib.sha256).hexdigest()

    def event_token(self, now: float | None = None) -> tuple[str, int]:
        """A token for ``GET /events`` and its lifetime in seconds."""
        expiry = int(now if now is not None else time.time()) + TOKEN_SECONDS
        return f"{expiry}.{self._sign(expiry)}", TOKEN_SECONDS

    def check_event_token(self, token: str | None, now: float | None = None) -> bool:
        if self.open:
            return True
        if not token or token.count(".") != 1:
            return False
        expiry_text, signature = token.split(".")
        if not expiry_text.isdigit() or len(expiry_text) > 12:
            return False
        expiry = int(expiry_text)
        current = now if now is not None else time.time()
        if not current <= expiry <= current + TOKEN_SECONDS + 5:
            return False
        return hmac.compare_digest(signature.encode(), self._sign(expiry).encode())
