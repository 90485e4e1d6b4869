"""URLs that name a secret instead of holding one (AWS Secrets Manager, SSM Parameter Store).

In any backend URL (``CONVEYOR_QUEUE_URL``, ``CONVEYOR_CATALOG_URL``,
``CONVEYOR_VECTORS_URL``, ``CONVEYOR_BLOBS_URL``) and in ``CONVEYOR_LLM_API_KEY``:

* ``secretsmanager://ARN-OR-NAME`` — the whole value is the secret's string (a
  JSON secret gives its ``url``, else its ``password`` key: what RDS stores);
* ``ssm://NAME`` (``ssm:///conveyor/catalog-url``) — the whole value is the
  parameter's, decrypted;
* ``…?password_secret=ARN-OR-NAME`` or ``…?password_parameter=NAME`` — the URL as
  written, with the password from the secret (a JSON secret's ``password`` key)
  put in its place, URL-quoted, and the parameter removed.

Secrets are read once per process (at start-up, when the settings are built) and
kept in memory only; the messages about them name the secret, never its value.
The region comes from the ARN, else boto3's default; ``AWS_ENDPOINT_URL`` is
honoured as boto3 does.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .exceptions import ConfigurationError

MARKERS = ("secretsmanager://", "ssm://", "password_secret=", "password_parameter=")


def _region(name: str) -> str | None:
    parts = name.split(":")
    return parts[3] if name.startswith("arn:") and len(parts) > 3 and parts[3] else None


@functools.lru_cache(maxsize=64)
def read_secret(kind: str, name: str) -> str:
    """The value of a Secrets Manager secret (``kind`` ``secretsmanager``) or an SSM
    parameter (``ssm``), read once per process."""
    try:
        import boto3
    except ImportError:
        raise ConfigurationError(
            f"reading the secret {name} needs boto3: pip install 'conveyor[aws]'"
        ) from None
    session = boto3.session.Session()
    quiet = logging.getLogger("botocore.parsers")  # its debug lines hold response bodies
    level = quiet.level
    quiet.setLevel(logging.INFO)
    try:
        if kind == "ssm":
            ssm = session.client("ssm", region_name=_region(name))
            answer = ssm.get_parameter(Name=name, WithDecryption=True)
            return str(answer["Parameter"]["Value"])
        manager = session.client("secretsmanager", region_name=_region(name))
        return str(manager.get_secret_value(SecretId=name)["SecretString"])
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
        where = "SSM parameter" if kind == "ssm" else "secret"
        raise ConfigurationError(f"cannot read the {where} {name} ({code})") from None
    finally:
        quiet.setLevel(level)


def _field(value: str, *keys: str) -> str:
    """A JSON secret's first key of ``keys`` present; a plain string as it is."""
    try:
        data: Any = json.loads(value)
    except ValueError:
        return value
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                return str(data[key])
    return value


def resolve(value: str | None) -> str | None:
    """``value`` with every secret it names read in (unchanged when it names none)."""
    if value is None or not any(marker in value for marker in MARKERS):
        return value
    if value.startswith("secretsmanager://"):
        return _field(
            read_secret("secretsmanager", value[len("secretsmanager://") :]), "url", "password"
        )
    if value.startswith("ssm://"):
        return read_secret("ssm", value[len("ssm://") :])
    parts = urlsplit(value)
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = None
    kept = []
    for key, item in query:
        if key == "password_secret":
            password = _field(read_secret("secretsmanager", item), "password")
        elif key == "password_parameter":
            password = read_secret("ssm", item)
        else:
            kept.append((key, item))
    if password is None or parts.username is None:
        raise ConfigurationError(
            f"{parts.scheme}://… names a password secret but no user to give it to: "
            "write scheme://USER@host/…?password_secret=…"
        )
    host = parts.hostname or ""
    netloc = f"{parts.username}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept), parts.fragment))
