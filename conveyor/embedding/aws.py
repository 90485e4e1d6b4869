"""Amazon Bedrock and SageMaker endpoints, through boto3 (``pip install 'conveyor[aws]'``).

* ``bedrock://amazon.titan-embed-text-v2:0?region=eu-west-1`` — Titan Text
  Embeddings v2 (one text a request; ``?dimensions=`` 256, 512 or 1024), also
  ``amazon.titan-embed-text-v1``;
* ``bedrock://cohere.embed-english-v3?region=…`` — Cohere Embed v3 (English or
  multilingual; 96 texts a request, ``input_type`` ``search_document``);
* ``sagemaker://my-endpoint?region=…`` — an endpoint running a Text Embeddings
  Inference (Hugging Face) container: ``{"inputs": [...]}`` in, a list of
  vectors out.

Credentials come from boto3's usual chain (role, environment, profile);
``?endpoint_url=`` (or ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` /
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``) points the client elsewhere. botocore's
own retries are off: :class:`~conveyor.embedding.remote.RemoteEmbedder` retries
throttling and unavailability itself, within its bound on requests in flight.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError
from .remote import (
    Estimate,
    Limits,
    ProviderRefused,
    RemoteEmbedder,
    RetryPolicy,
    Throttled,
    Unavailable,
    redact,
)

THROTTLING = {
    "ThrottlingException",
    "TooManyRequestsException",
    "ServiceQuotaExceededException",
    "RequestLimitExceeded",
}
UNAVAILABLE = {
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalServerException",
    "InternalFailure",
    "ModelNotReadyException",
    "ModelTimeoutException",
    "InternalDependencyException",
}
TITAN = Limits(max_inputs=1, max_request_tokens=8192, max_input_tokens=8192)
COHERE = Limits(max_inputs=96, max_request_tokens=96 * 512, max_input_tokens=512)
TEI = Limits(max_inputs=32, max_request_tokens=16384, max_input_tokens=512)
"""TEI's defaults (``--max-client-batch-size 32``, ``--max-batch-tokens 16384``);
``?max_inputs=`` and ``?max_tokens=`` follow a container started otherwise."""


def _client(service: str, region: str | None, endpoint_url: str | None, in_flight: int) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigurationError(
            f"the {service} embedder needs boto3: pip install 'conveyor[aws]'"
        ) from None
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=max(10, in_flight * 2),
    )
    session = boto3.session.Session()
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def _raise_for(exc: Exception, what: str) -> None:
    """Turn a botocore error into Throttled, Unavailable or ProviderRefused."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0)
        original = exc.response.get("OriginalStatusCode")  # SageMaker's ModelError
        if original is not None:
            status = int(original)
        if code in THROTTLING or status == 429:
            after = (meta.get("HTTPHeaders") or {}).get("retry-after")
            raise Throttled(code or "HTTP 429", float(after) if after else None) from None
        if code in UNAVAILABLE or status >= 500:
            raise Unavailable(f"{code or 'HTTP'} {status}") from None
        message = redact(str(error.get("Message", "")))
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            reason = "refused the credentials (check the role's permissions)"
        elif code == "ResourceNotFoundException":
            reason = "does not know the model"
        else:
            reason = "refused the input"
        raise ProviderRefused(
            f"{what} {reason} ({code or status})" + (f": {message}" if message else "")
        ) from None
    if isinstance(exc, BotoCoreError):  # connection refused, timeouts
        raise Unavailable(type(exc).__name__) from None
    raise exc


class BedrockEmbedder(RemoteEmbedder):
    """Titan (v1, v2) or Cohere v3 on Amazon Bedrock."""

    backend = "bedrock"

    def __init__(
        self,
        model: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        dimensions: int | None = None,
        limits: Limits | None = None,
        estimate: Estimate | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.model = model
        self.dimensions = dimensions
        if model.startswith("cohere.embed-"):
            self.family, default_limits, dim = "cohere", COHERE, 1024
            if dimensions:
                raise ConfigurationError(f"{model} has no dimensions parameter (always 1024)")
        elif model.startswith("amazon.titan-embed-text-v2"):
            self.family, default_limits, dim = "titan", TITAN, dimensions or 1024
            if dim not in (256, 512, 1024):
                raise ConfigurationError(f"{model} takes dimensions 256, 512 or 1024, not {dim}")
        elif model.startswith("amazon.titan-embed"):
            self.family, default_limits, dim = "titan-v1", TITAN, 1536
        else:
            raise ConfigurationError(
                f"unsupported Bedrock embedding model {model!r}: use "
                "amazon.titan-embed-text-v2:0, amazon.titan-embed-text-v1, "
                "cohere.embed-english-v3 or cohere.embed-multilingual-v3"
            )
        model_id = f"{model}?dimensions={dimensions}" if dimensions else model
        limits = limits or default_limits
        super().__init__(model_id, dim=dim, estimate=estimate, retry=retry, limits=limits)
        self._client = _client("bedrock-runtime", region, endpoint_url, limits.in_flight)

    def _body(self, texts: list[str]) -> dict[str, Any]:
        if self.family == "cohere":
            return {"texts": texts, "input_type": "search_document", "truncate": "NONE"}
        [text] = texts
        if self.family == "titan":
            return {"inputText": text, "dimensions": self._dim, "normalize": True}
        return {"inputText": text}

    def _request(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        try:
            response = self._client.invoke_model(
                modelId=self.model,
                body=json.dumps(self._body(texts)),
                contentType="application/json",
                accept="application/json",
            )
            data = json.loads(response["body"].read())
        except Exception as exc:
            _raise_for(exc, f"Bedrock ({self.model})")
            raise
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        count = headers.get("x-amzn-bedrock-input-token-count") or data.get("inputTextTokenCount")
        if self.family == "cohere":
            embeddings = data["embeddings"]
            rows = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
        else:
            rows = [data["embedding"]]
        return np.asarray(rows, dtype=np.float32), int(count) if count is not None else None

    def close(self) -> None:
        self._client.close()


class SageMakerEmbedder(RemoteEmbedder):
    """A SageMaker endpoint serving a Text Embeddings Inference container."""

    backend = "sagemaker"

    def __init__(
        self,
        endpoint: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        model: str | None = None,
        dim: int | None = None,
        limits: Limits | None = None,
        estimate: Estimate | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.endpoint = endpoint
        limits = limits or TEI
        super().__init__(
            model or f"sagemaker/{endpoint}", dim=dim, estimate=estimate, retry=retry, limits=limits
        )
        self._client = _client("sagemaker-runtime", region, endpoint_url, limits.in_flight)

    def _request(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        try:
            response = self._client.invoke_endpoint(
                EndpointName=self.endpoint,
                Body=json.dumps({"inputs": texts, "normalize": True, "truncate": False}),
                ContentType="application/json",
                Accept="application/json",
            )
            data = json.loads(response["Body"].read())
        except Exception as exc:
            _raise_for(exc, f"SageMaker endpoint {self.endpoint}")
            raise
        if isinstance(data, dict):  # some containers wrap the list
            data = data.get("embeddings", data.get("vectors"))
        return np.asarray(data, dtype=np.float32), None

    def close(self) -> None:
        self._client.close()
