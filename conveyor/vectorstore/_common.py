"""What every vector-store backend checks the same way: model binding, query
vectors, filters, and the "install the extra" error, so that every backend
refuses the same inputs with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..exceptions import ConfigurationError, ConveyorError, ModelMismatch, safe_summary
from ..filters import Filter

if TYPE_CHECKING:
    from . import ChunkRecord

T = TypeVar("T")


def check_model(name: str, have_dim: int, have_model: str, dim: int, model_id: str) -> None:
    """Refuse vectors from another model or dimension than the collection's."""
    if have_dim != dim or have_model != model_id:
        raise ModelMismatch(
            f"collection {name!r} holds {have_dim}-dimensional vectors from "
            f"{have_model}; refusing {dim}-dimensional vectors from {model_id} "
            "(use another collection, or re-index this one)"
        )


def query_vector(
    collection: str, vector: npt.ArrayLike, dim: int, model_id: str
) -> npt.NDArray[np.float32]:
    """``vector`` as 1-D float32, or :class:`ModelMismatch` when its size is wrong."""
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if query.shape[0] != dim:
        raise ModelMismatch(
            f"query vector has {query.shape[0]} dimensions; collection {collection!r} "
            f"has {dim} (from {model_id})"
        )
    return query


def filters(where: Filter | Mapping[str, Any] | None) -> Filter:
    """The query's :class:`~conveyor.filters.Filter` (an older ``{"document_id": …,
    "source": …}`` dict is read as one)."""
    return Filter.of(where)


def require_vector(record: ChunkRecord) -> npt.NDArray[np.float32]:
    if record.vector is None:
        raise ConveyorError(f"chunk {record.id} has no vector")
    return np.asarray(record.vector, dtype=np.float32).reshape(-1)


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def missing_extra(what: str, extra: str, url: str) -> ConfigurationError:
    return ConfigurationError(
        f"vector store URL {safe_summary(url)!r} needs {what}: pip install 'conveyor[{extra}]'"
    )
