"""One source of configuration: environment variables ``CONVEYOR_*``.

Also honoured, for teams moving from hand-built pipelines:
``CHUNK_SIZE_DOC_SPLIT``, ``OVERLAP_FOR_DOC_SPLIT``, ``EMBEDDING_SERVICE_URL``.
CLI options default from here; ``conveyor <command> --help`` shows the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .exceptions import ConfigurationError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SECRET_FIELDS = ("queue_url", "catalog_url", "blobs_url", "vectors_url", "llm_api_key")
"""Settings whose value may name a secret (:mod:`conveyor.secrets`)."""


class Settings(BaseSettings):
    """Every knob of conveyor. Field ``x`` is read from ``CONVEYOR_X``."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", populate_by_name=True)

    home: Path = Field(Path("conveyor-data"), description="where data lives")
    queue_url: str | None = Field(None, description="queue backend; default: SQLite in home")
    catalog_url: str | None = Field(None, description="catalog; default: SQLite in home")
    blobs_url: str | None = Field(None, description="blob store; default: home/blobs")
    vectors_url: str | None = Field(None, description="vector store; default: sqlite-vec in home")

    collection: str = "default"
    model: str = Field(DEFAULT_MODEL, description="sentence-transformers model name or path")
    embedder: str | None = Field(
        None,
        description="a remote provider: openai://MODEL, bedrock://MODEL?region=R, "
        "sagemaker://ENDPOINT?region=R; local://MODEL is the model in this process",
    )
    device: str = "cpu"
    embedding_backend: Literal["torch", "onnx", "onnx-int8", "openvino-int8"] = Field(
        "openvino-int8",
        description="openvino-int8 (OpenVINO + NNCF int8, weights and activations: the "
        "fastest that passes the quality gate, see README), onnx-int8 (ONNX Runtime, int8 "
        "weights), onnx (fp32) or torch (sentence-transformers); vectors of different "
        "precisions never share a collection",
    )
    models_dir: Path | None = Field(
        None,
        description="exported ONNX models; default: ~/.cache/conveyor/models, shared by every "
        "home of this user (a container bakes them in)",
    )
    search_mode: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="search mode when none is given"
    )
    fusion: Literal["rrf", "dbsf"] = Field(
        "dbsf",
        description="hybrid search: fuse the two rankings by rank (rrf) or by their scores, "
        "each ranking's scaled by its mean and standard deviation (dbsf)",
    )
    rrf_constant: float = Field(
        60.0, gt=0, description="hybrid search: the reciprocal rank fusion constant"
    )
    rrf_dense_weight: float = Field(1.0, ge=0, description="hybrid search: weight of dense ranks")
    rrf_lexical_weight: float = Field(
        1.0, ge=0, description="hybrid search: weight of lexical (BM25) ranks"
    )
    hybrid_candidates: int = Field(
        50, ge=1, le=1000, description="hybrid search: hits read from each ranking"
    )
    search_candidates: int = Field(
        400,
        ge=0,
        le=4096,
        description="sqlite-vec: chunks the bit scan hands to exact re-rank (at least 8 x k); "
        "0: exact scan of every vector",
    )
    embed_batch_size: int = Field(64, ge=1)
    embedding_cache: bool = True

    chunk_size: int = Field(
        200,
        ge=16,
        validation_alias=AliasChoices("CONVEYOR_CHUNK_SIZE", "CHUNK_SIZE_DOC_SPLIT"),
        description="chunk size in the embedding model's tokens",
    )
    chunk_overlap: int = Field(
        30,
        ge=0,
        validation_alias=AliasChoices("CONVEYOR_CHUNK_OVERLAP", "OVERLAP_FOR_DOC_SPLIT"),
        description="overlap between chunks, in tokens",
    )

    concurrency: int = Field(2, ge=1, description="jobs in flight per process")
    job_group: int = Field(
        32,
        ge=1,
        description="most small jobs a worker thread takes at once, their chunks embedded "
        "in one model call (1: one at a time)",
    )
    visibility_timeout: float = Field(60.0, gt=0, description="lease length, seconds")
    max_receives: int = Field(5, ge=1, description="deliveries before dead-letter")
    long_queue_url: str | None = Field(
        None, description="queue for jobs predicted to run long (ECS workers serve it)"
    )
    long_job_seconds: float = Field(
        600.0, gt=0, description="jobs predicted to run longer go to the long queue"
    )
    max_in_flight: int = Field(
        0, ge=0, description="jobs running at once across all workers (SQL queues); 0: no cap"
    )
    retry_base_seconds: float = Field(2.0, ge=0)
    lambda_reserve_seconds: float = Field(
        10.0, ge=0, description="Lambda: time kept for merging and replying; no record starts later"
    )
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=1, description="larger sources fail")
    max_pdf_pages: int | None = Field(
        2000, ge=1, description="PDFs (and images) with more pages fail"
    )
    max_text_chars: int = Field(
        20_000_000, ge=1, description="documents with more extracted text fail (characters)"
    )
    max_chunks: int = Field(20_000, ge=1, description="documents with more chunks fail")
    isolate_extraction: bool = Field(True, description="extract in a child process")
    extract_timeout: float = Field(
        300.0, ge=0, description="seconds without progress (a page, a minute of audio); 0: none"
    )
    extract_total_timeout: float = Field(
        1800.0, ge=0, description="seconds per file in all, progress or not; 0: no limit"
    )
    extract_memory_mb: int = Field(4096, ge=0, description="MiB per extraction; 0: no limit")

    ocr_lang: str = Field("eng", description="Tesseract language(s), e.g. eng+deu")
    ocr_timeout: float = Field(60.0, ge=0, description="seconds of OCR per page; 0: no limit")
    ocr_orientation: bool = Field(True, description="detect pages turned by 90/180/270")
    max_image_pixels: int = Field(50_000_000, ge=1, description="larger images fail")

    pdf_pages: bool = Field(
        True, description="PDFs also fill <collection>_pages, one entry per page"
    )
    page_images: bool = Field(
        False, description="render every PDF page to artifacts/<document>/pages/<n>.png"
    )
    page_dpi: int = Field(110, ge=10, le=600, description="resolution of page images")
    page_image_format: Literal["png", "webp"] = Field("png", description="page image format")
    page_max_pixels: int = Field(
        10_000_000, ge=10_000, description="a larger page image is rendered smaller to fit"
    )

    whisper_model: str = Field("tiny.en", description="faster-whisper model name or folder")
    whisper_compute_type: str = Field("int8", description="CTranslate2 compute type")
    whisper_language: str | None = Field(None, description="spoken language; None: detect")
    whisper_threads: int = Field(0, ge=0, description="CPU threads for Whisper; 0: all")
    diarize: bool = Field(True, description="label a recording's speakers (resemblyzer)")
    speakers: int | None = Field(
        None, ge=1, description="how many speakers a recording has; None: found"
    )

    llm_base_url: str | None = Field(None, description="OpenAI-compatible API for summaries")
    llm_model: str | None = None
    llm_api_key: str | None = Field(None, repr=False)
    llm_timeout: float = Field(30.0, gt=0)
    llm_max_input_tokens: int = Field(
        3000, ge=100, description="document metadata: tokens of a PDF's first pages sent (estimate)"
    )
    describe_documents: bool = Field(
        True, description="PDFs: title, summary, keywords, type and language (LLM or offline)"
    )
    contextual_headers: bool = Field(
        True, description="embed each chunk with its document's title and section path before it"
    )

    embedding_url: str | None = Field(
        None,
        validation_alias=AliasChoices("CONVEYOR_EMBEDDING_URL", "EMBEDDING_SERVICE_URL"),
        description="URL of a conveyor embed-server; the local model is the fallback",
    )

    api_keys: str | None = Field(
        None, repr=False, description="comma-separated keys for `conveyor serve`; none: 127.0.0.1"
    )
    max_upload_bytes: int | None = Field(
        None, ge=1, description="largest upload to `conveyor serve`; default: max_file_bytes"
    )
    metrics_need_key: bool = Field(False, description="GET /metrics needs an API key too")

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, value: int, info: ValidationInfo) -> int:
        size = info.data.get("chunk_size")
        if size is not None and value >= size:
            raise ValueError(f"chunk overlap ({value}) must be smaller than chunk size ({size})")
        return value

    @field_validator("embedder")
    @classmethod
    def _embedder_url(cls, value: str | None) -> str | None:
        if value is not None:
            from .embedding.providers import parse

            try:
                parse(value)  # a wrong scheme fails here, naming the variable
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def remote_embedder(self) -> str | None:
        """``CONVEYOR_EMBEDDER`` when it names a remote provider."""
        return None if not self.embedder or self.embedder.startswith("local://") else self.embedder

    @model_validator(mode="after")
    def _local_embedder_names_the_model(self) -> Settings:
        """``CONVEYOR_EMBEDDER=local://NAME`` is ``CONVEYOR_MODEL=NAME``."""
        if self.embedder and self.embedder.startswith("local://"):
            self.model = self.embedder[len("local://") :].split("?")[0]
        return self

    @model_validator(mode="after")
    def _read_secrets(self) -> Settings:
        """URLs that name a secret (``secretsmanager://…``, ``?password_secret=…``) get
        it, read once per process: see :mod:`conveyor.secrets`."""
        from .secrets import resolve

        for name in SECRET_FIELDS:
            try:
                value = resolve(getattr(self, name))
            except ConfigurationError as exc:
                raise ValueError(f"{env_var(name)}: {exc}") from None
            object.__setattr__(self, name, value)
        return self

    @property
    def database_path(self) -> Path:
        """The one SQLite file that holds queue, catalog and vectors by default."""
        return self.home / "conveyor.db"

    @property
    def models_path(self) -> Path:
        """Where exported ONNX models are kept: ``CONVEYOR_MODELS_DIR``, else the user's
        cache (``$XDG_CACHE_HOME/conveyor/models``), so a model is exported once per
        machine, not once per home."""
        if self.models_dir is not None:
            return self.models_dir
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(cache) / "conveyor" / "models"

    @property
    def blobs_path(self) -> Path:
        return self.home / "blobs"

    def with_home(self, home: Path | str | None) -> Settings:
        """A copy with ``home`` replaced (the CLI's ``--home``)."""
        if home is None:
            return self
        return self.model_copy(update={"home": Path(home)})


def env_var(field: str) -> str:
    """The environment variable that sets ``field``, for ``--help`` texts."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return " / ".join(str(choice) for choice in alias.choices)
    return f"CONVEYOR_{field.upper()}"
