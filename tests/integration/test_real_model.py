"""The pipeline with the real all-MiniLM-L6-v2 and real sqlite-vec."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from support import QUERIES, WHALES, topic_corpus

from conveyor.app import Conveyor
from conveyor.chunking import chunk_sections
from conveyor.embedding.batching import BatchingEmbedder
from conveyor.extract import Section
from conveyor.settings import Settings
from conveyor.testing import prose


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return topic_corpus(tmp_path / "docs", filler=600, whales_pdf=True)


def test_search_finds_the_document_with_the_phrase(real_embedder, home: Path, corpus: Path) -> None:
    with Conveyor(Settings(home=home), embedder=real_embedder) as cv:
        summary = cv.ingest([corpus])
        assert (summary.done, summary.failed) == (4, 0)
        cases = {**QUERIES, WHALES[1]: "whales.pdf"}
        results = cv.search_many(list(cases), k=3)
        for (query, expected), hits in zip(cases.items(), results, strict=True):
            assert hits[0].source.endswith(expected), (query, [h.source for h in hits])
        whale = results[3][0]
        assert whale.page == 2
        assert whale.metadata.get("title") == "Whales"


def test_chunks_fit_the_model_with_real_tokenizer(real_embedder) -> None:
    tok = real_embedder.tokenizer
    assert tok.max_tokens == 254  # 256 minus [CLS] and [SEP]
    text = prose(11, 3000) + " " + "Pneumonoultramicroscopicsilicovolcanoconiosis" * 80
    chunks = chunk_sections([Section(text)], tok, size=1000, overlap=50)
    inner = real_embedder.load().tokenizer
    for c in chunks:
        ids = inner(c.text, add_special_tokens=True, truncation=False)["input_ids"]
        assert len(ids) <= 256
        assert text[c.start : c.end] == c.text


def test_batching_across_threads_matches_direct(real_embedder) -> None:
    texts = [
        f"sentence number {i} about {w}"
        for i, w in enumerate(["cats", "rain", "trains", "tea", "maps", "code", "boats", "snow"])
    ]
    direct = real_embedder.embed(texts)
    batcher = BatchingEmbedder(real_embedder, max_batch=64, max_wait=0.05)
    out: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        out[i] = batcher.embed(texts[i * 2 : i * 2 + 2])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    merged = np.vstack([out[i] for i in range(4)])
    assert merged.shape == (8, 384)
    assert np.allclose(np.sum(merged * direct, axis=1), 1.0, atol=1e-4)
    assert np.allclose(np.linalg.norm(merged, axis=1), 1.0, atol=1e-4)


def test_a_counted_text_is_not_tokenized_again_for_the_model(onnx_int8) -> None:
    """The model's ids of a text the chunker or the batcher counted come from that count
    (the memo), and are exactly what the tokenizer makes with special tokens."""
    tok = onnx_int8.tokenizer
    texts = [prose(i, 60) for i in range(6)] + ["", "naïve café — “quotes” 日本語 😀", "x" * 3000]
    made = [e.ids for e in tok._tok.encode_batch(texts, add_special_tokens=True)]
    assert tok.model_ids(texts) == made  # not counted: tokenized here

    counts = tok.count(texts[:4])
    assert counts == [len(ids) - 2 for ids in made[:4]] and set(tok._memo) >= set(texts[:4])
    tok._tok, real = None, tok._tok  # a second tokenization would fail now
    try:
        assert tok.count(texts[:4]) == counts  # the batcher's count: from the memo
        assert tok.model_ids(texts[:4]) == made[:4]  # the model's ids: taken from it
    finally:
        tok._tok = real
    assert not set(tok._memo) & set(texts[:4])

    copy = pickle.loads(pickle.dumps(tok))  # the extraction child's: keeps nothing
    assert copy.count(texts[:2]) == counts[:2] and len(copy._memo) == 0
    fresh = onnx_int8.embed(texts[:3])
    tok.count(texts[:3])  # now the model's ids come from the memo
    assert np.allclose(onnx_int8.embed(texts[:3]), fresh, atol=1e-6)


def test_a_one_chunk_section_is_tokenized_once(onnx_int8) -> None:
    """A section short enough to be one chunk: the ids the chunker's offsets found
    serve its count and the model; a longer one is not kept."""
    tok = onnx_int8.tokenizer
    short, long = prose(901, 60).strip(), prose(902, 400)  # sections come stripped
    chunks = chunk_sections([Section(short), Section(long)], tok, 256, 32)
    assert chunks[0].text == short and len(chunks) > 2
    assert short in tok._memo and long not in tok._memo
    made = tok._tok.encode(short, add_special_tokens=True).ids
    tok._tok, real = None, tok._tok  # a second tokenization would fail now
    try:
        assert tok.model_ids([short]) == [made]
    finally:
        tok._tok = real
