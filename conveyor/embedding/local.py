"""sentence-transformers in this process; the tokenizer loads without the model."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import ConfigurationError
from . import canonical_model_name, l2_normalise, model_folder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


class LocalTokenizer:
    """The model's fast (Rust) tokenizer, with truncation and padding turned off.

    Each text is tokenized once on its way to the model: the ids :meth:`count` finds,
    and those of a text short enough to be a chunk whole that :meth:`offsets` cut,
    are kept (the last :data:`MEMO` texts), so the chunker's count, the batcher's and
    the model's :meth:`model_ids` of such a chunk reuse them. A copy sent to
    another process (the extraction child, which never runs the model) keeps none.
    """

    MEMO = 4096

    def __init__(self, folder: Path, max_seq_length: int) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        path = folder / "tokenizer.json"
        if not path.exists():
            raise ConfigurationError(f"model folder {folder} has no tokenizer.json")
        self._tok = HFTokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        special = self._tok.num_special_tokens_to_add(is_pair=False)
        self.max_tokens = max_seq_length - special
        self._specials = _specials(self._tok)
        self._memo: OrderedDict[str, list[int]] = OrderedDict()
        self._memo_size = self.MEMO if self._specials is not None else 0
        self._memo_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = {**self.__dict__, "_memo": OrderedDict(), "_memo_size": 0}
        del state["_memo_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _memo_lock=threading.Lock())

    def offsets(self, text: str) -> list[tuple[int, int]]:
        # encode_batch lets go of the GIL while it works (encode holds it)
        encoding = self._tok.encode_batch([text], add_special_tokens=False)[0]
        if len(encoding.ids) <= self.max_tokens:  # may become a chunk whole: its count
            self._keep({text: encoding.ids})  # and the model's ids reuse these
        return list(encoding.offsets)

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self._ids(texts, keep=True)]

    def model_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids as the model reads them (special tokens added, not cut)."""
        if self._specials is None:
            encs = self._tok.encode_batch(list(texts), add_special_tokens=True)
            return [e.ids for e in encs]
        head, tail = self._specials
        return [[*head, *ids, *tail] for ids in self._ids(texts, keep=False)]

    def _ids(self, texts: Sequence[str], *, keep: bool) -> list[list[int]]:
        """Ids without special tokens, from the memo where a text is in it; ``keep``
        leaves them there (a count: the model reads them next), else they leave it."""
        found: dict[str, list[int]] = {}
        with self._memo_lock:
            for text in texts:
                ids = self._memo.get(text) if keep else self._memo.pop(text, None)
                if ids is not None:
                    found[text] = ids
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            encs = self._tok.encode_batch(missing, add_special_tokens=False)
            fresh = {text: enc.ids for text, enc in zip(missing, encs, strict=True)}
            found.update(fresh)
            if keep:
                self._keep(fresh)
        return [found[text] for text in texts]

    def _keep(self, ids: dict[str, list[int]]) -> None:
        """Into the memo, the oldest out beyond its size."""
        if not self._memo_size:
            return
        with self._memo_lock:
            self._memo.update(ids)
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)


def _specials(tok: Any) -> tuple[list[int], list[int]] | None:
    """The ids the tokenizer puts before and after a text's own (``[CLS]``, ``[SEP]``),
    or None when they are not simply around them (the model's ids are then asked of
    the tokenizer itself)."""
    for probe in ("a", "the cat"):
        bare = tok.encode(probe, add_special_tokens=False).ids
        full = tok.encode(probe, add_special_tokens=True).ids
        n = len(bare)
        starts = [i for i in range(len(full) - n + 1) if full[i : i + n] == bare]
        if n and starts:
            head, tail = full[: starts[0]], full[starts[0] + n :]
            empty = tok.encode("", add_special_tokens=True).ids
            return (head, tail) if empty == [*head, *tail] else None
    return None


def _max_seq_length(folder: Path) -> int:
    config = folder / "sentence_bert_config.json"
    if config.exists():
        value = json.loads(config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    hf_config = folder / "config.json"
    if hf_config.exists():
        value = json.loads(hf_config.read_text()).get("max_position_embeddings")
        if value:
            return int(value)
    return 512


class LocalEmbedder:
    """A sentence-transformers model in this process, loaded on first use.

    ``model_id`` is the model's name (``sentence-transformers/all-MiniLM-L6-v2``),
    whichever folder it was loaded from.
    """

    backend = "torch"
    """As ``CONVEYOR_EMBEDDING_BACKEND`` names it (sentence-transformers over PyTorch)."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 64) -> None:
        self.model_id = canonical_model_name(model)
        self.folder = model_folder(model)
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = _max_seq_length(self.folder)
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self._tokenizer: LocalTokenizer | None = None

    @property
    def tokenizer(self) -> LocalTokenizer:
        if self._tokenizer is None:
            self._tokenizer = LocalTokenizer(self.folder, self.max_seq_length)
        return self._tokenizer

    def load(self) -> Any:
        """Load the model now (it loads by itself on first ``embed``); returns it.

        Typed ``Any`` so as to fit :meth:`LocalModel.load <conveyor.embedding.LocalModel.load>`
        (which returns nothing); the model is a ``SentenceTransformer``."""
        return self._loaded()

    def _loaded(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
                log.info("loading embedding model", extra={"model": self.model_id})
                self._model = SentenceTransformer(str(self.folder), device=self.device)
                self._model.max_seq_length = self.max_seq_length
            return self._model

    @property
    def dim(self) -> int:
        dim = self._loaded().get_embedding_dimension()
        if dim is None:
            raise ConfigurationError(f"model {self.model_id} does not say its vector dimension")
        return int(dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._loaded()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return l2_normalise(np.asarray(vectors, dtype=np.float32))

    def close(self) -> None:
        """Nothing to release: the model is freed with this object."""
