"""Fakes for fast unit tests: a deterministic embedder and a whitespace tokenizer.

They are shipped in the package so that apps built on conveyor can test
without the model. The real model and real backends are tested too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from .embedding import l2_normalise

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class WhitespaceTokenizer:
    """Words and punctuation marks are tokens; spans are exact."""

    def __init__(self, max_tokens: int = 254) -> None:
        self.max_tokens = max_tokens

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]


class FakeEmbedder:
    """Bag-of-words hashed into ``dim`` buckets: texts sharing words are close.

    Deterministic across processes; counts calls and texts for assertions.
    """

    def __init__(self, dim: int = 32, model_id: str = "fake/bag-of-words") -> None:
        self.model_id = model_id
        self._dim = dim
        self.calls = 0
        self.texts = 0
        self.tokenizer = WhitespaceTokenizer()

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self._dim] += 1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return l2_normalise(out)
