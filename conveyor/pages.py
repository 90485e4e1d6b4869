"""A PDF's pages on the worker's side: where the child renders page images, their
upload to the blob store, and the vectors of the pages collection.

The extraction child (:mod:`conveyor.extract.pages`) renders into a temporary folder
this module makes; :func:`store_page_images` then puts each image at
``artifacts/<document id>/pages/<n>.<format>``, one file at a time (a 500-page PDF
is never in memory at once), and removes images a previous version of the document
left beyond its new pages.

The pages collection (``<collection>_pages``) has one entry per page with text. The
model reads only the first 256 tokens of a text, so embedding a page's whole text
would describe its top only; a page's vector is instead the normalised mean of the
vectors of its chunks (:func:`page_vectors`), which costs no model call.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .blobstore import BlobStore
from .chunking import Chunk
from .extract import Extracted, Section
from .settings import Settings


def page_fingerprint(settings: Settings) -> str:
    """What the page settings add to a document's fingerprint: nothing by default, so
    turning page images on (or the pages collection off) redoes documents ingested
    before, instead of skipping them as unchanged."""
    out = "" if settings.pdf_pages else "|pages:off"
    if settings.page_images:
        s = settings
        out += f"|images:{s.page_dpi}:{s.page_image_format}:{s.page_max_pixels}"
    return out


def pages_prefix(document_id: str) -> str:
    return f"artifacts/{document_id}/pages/"


@contextmanager
def rendering(settings: Settings, document_id: str) -> Iterator[dict[str, Any]]:
    """The extraction options that ask for page images (none when they are off), with
    a temporary folder for them that is removed afterwards."""
    if not settings.page_images:  # and none a job's options name
        yield {"page_images_dir": None, "page_image_key": None}
        return
    fmt = settings.page_image_format
    with tempfile.TemporaryDirectory(prefix="conveyor-pages-") as folder:
        yield {
            "page_images_dir": folder,
            "page_image_key": pages_prefix(document_id) + "{n}." + fmt,
            "page_dpi": settings.page_dpi,
            "page_image_format": fmt,
            "page_max_pixels": settings.page_max_pixels,
        }


def store_page_images(
    blobs: BlobStore,
    document_id: str,
    options: dict[str, Any],
    extracted: Extracted,
    *,
    earlier: bool = False,
) -> int:
    """Upload what the child rendered, one image at a time, and delete the document's
    page images that this version did not render (a PDF now shorter, page images
    turned off, a PDF replaced by another kind) when it rendered or an ``earlier``
    version had page images. Returns the images stored."""
    folder = options.get("page_images_dir") if extracted.kind == "pdf" else None
    if not folder and not earlier:
        return 0
    template = str(options.get("page_image_key") or "")
    kept: set[str] = set()
    if folder:
        for path in sorted(Path(folder).iterdir()):
            number = path.stem
            if not number.isdigit():
                continue
            key = template.format(n=int(number))
            with path.open("rb") as image:
                blobs.put(key, image)
            path.unlink()
            kept.add(key)
    remove_page_images(blobs, document_id, keep=kept)
    return len(kept)


def remove_page_images(blobs: BlobStore, document_id: str, keep: Collection[str] = ()) -> None:
    """Delete the document's page images but those in ``keep`` (a deleted document's:
    all of them)."""
    for info in list(blobs.list(pages_prefix(document_id))):
        if info.key not in keep:
            blobs.delete(info.key)


def page_vectors(
    units: Sequence[Section], chunks: Sequence[Chunk], vectors: np.ndarray
) -> tuple[list[Section], np.ndarray]:
    """Each page's vector: the normalised mean of its chunks' vectors. Pages without a
    chunk (none should be: units are pages with text) are left out."""
    rows: dict[int, list[int]] = {}
    for i, chunk in enumerate(chunks):
        if chunk.page is not None:
            rows.setdefault(chunk.page, []).append(i)
    kept: list[Section] = []
    out: list[np.ndarray] = []
    for unit in units:
        found = rows.get(unit.page) if unit.page is not None else None
        if not found:
            continue
        mean = vectors[found].astype(np.float32).mean(axis=0)
        norm = float(np.linalg.norm(mean))
        out.append(mean / norm if norm > 0 else mean)
        unit.metadata["chunks"] = len(found)
        kept.append(unit)
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    matrix = np.stack(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)
    return kept, matrix
