"""``CONVEYOR_EMBEDDER``: which model embeds, named by a URL.

===============================================  ==========================================
``local://sentence-transformers/all-MiniLM-L6-v2``  the model in this process (the default)
``openai://text-embedding-3-small``                OpenAI, or ``?base_url=`` any server
                                                   speaking its API (TEI, Infinity, vLLM,
                                                   Ollama, ``conveyor embed-server``)
``bedrock://amazon.titan-embed-text-v2:0``         Amazon Bedrock (Titan v1/v2, Cohere v3)
``sagemaker://my-endpoint``                        a SageMaker TEI endpoint
===============================================  ==========================================

Common query parameters: ``dimensions`` (models that shorten their vectors),
``max_inputs`` / ``max_tokens`` (texts and tokens a request, for servers with
other limits than the provider's), ``max_input_tokens`` (tokens a text: what
chunking may make), ``in_flight`` (requests at once from this process). AWS:
``region``, ``endpoint_url``. SageMaker: ``model`` (the name recorded with the
vectors; default ``sagemaker/<endpoint>``) and ``dim``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

from ..exceptions import ConfigurationError
from .remote import Estimate, Limits, RemoteEmbedder

SCHEMES = ("local", "openai", "bedrock", "sagemaker")


@dataclass(frozen=True)
class EmbedderUrl:
    scheme: str
    name: str
    params: dict[str, str]

    def number(self, key: str) -> int | None:
        value = self.params.get(key)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise ConfigurationError(f"CONVEYOR_EMBEDDER: {key}={value!r} is not a positive number")
        return number


def parse(url: str) -> EmbedderUrl:
    """``scheme://name?key=value`` (names may hold ``/`` and ``:``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ConfigurationError(
            f"CONVEYOR_EMBEDDER={url.split('?')[0]!r} is not one of "
            + ", ".join(f"{s}://…" for s in SCHEMES)
        )
    name, _, query = rest.partition("?")
    if not name:
        raise ConfigurationError(f"CONVEYOR_EMBEDDER={url.split('?')[0]!r} names no model")
    return EmbedderUrl(scheme, name, dict(parse_qsl(query)))


def _limits(base: Limits, url: EmbedderUrl) -> Limits:
    changes = {
        field: value
        for field, key in (
            ("max_inputs", "max_inputs"),
            ("max_request_tokens", "max_tokens"),
            ("max_input_tokens", "max_input_tokens"),
            ("in_flight", "in_flight"),
        )
        if (value := url.number(key)) is not None
    }
    return replace(base, **changes)


def open_remote(url: str, *, estimate: Estimate | None = None) -> RemoteEmbedder:
    """The remote embedder ``url`` names (not ``local://``)."""
    parsed = parse(url)
    p = parsed.params
    if parsed.scheme == "openai":
        from .openai import LIMITS, OpenAIEmbedder

        return OpenAIEmbedder(
            parsed.name,
            base_url=p.get("base_url"),
            dimensions=parsed.number("dimensions"),
            limits=_limits(LIMITS, parsed),
            estimate=estimate,
        )
    if parsed.scheme == "bedrock":
        from .aws import COHERE, TITAN, BedrockEmbedder

        base = COHERE if parsed.name.startswith("cohere.") else TITAN
        return BedrockEmbedder(
            parsed.name,
            region=p.get("region"),
            endpoint_url=p.get("endpoint_url"),
            dimensions=parsed.number("dimensions"),
            limits=_limits(base, parsed),
            estimate=estimate,
        )
    if parsed.scheme == "sagemaker":
        from .aws import TEI, SageMakerEmbedder

        return SageMakerEmbedder(
            parsed.name,
            region=p.get("region"),
            endpoint_url=p.get("endpoint_url"),
            model=p.get("model"),
            dim=parsed.number("dim"),
            limits=_limits(TEI, parsed),
            estimate=estimate,
        )
    raise ConfigurationError(f"{url!r} is the local model, not a remote provider")
