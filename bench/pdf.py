"""PDF throughput and memory, with and without the pages collection and page images;
and which page vector finds pages best.

Throughput (the default): a generated PDF (``--pages``, 500 by default, ~300 words a
page) is ingested by the whole pipeline (isolated extraction, the default model and
backend, the compactor) three times, each in a fresh process: text only
(``CONVEYOR_PDF_PAGES=false``), with the pages collection (the default), and with
the pages collection and page images (``CONVEYOR_PAGE_IMAGES=true``, PNG at 110 dpi;
``--webp`` adds a WebP run). Printed per run: pages per second end to end, the
extract stage's pages per second, the seconds of each stage, the extraction
child's peak memory (``VmHWM``; rendering is one page at a time, so it should not
grow with the page count: ``--pages 100`` to compare) and the worker's.

    python bench/pdf.py                  # 500 pages
    python bench/pdf.py --pages 100 --webp

Page vectors (``--page-vectors``): page-finding sets built from the judged sets of
``bench/_judged.py``. Consecutive documents are laid out as pages of about
``--page-tokens`` tokens (CISI abstracts, Debian package descriptions); a page is
relevant to a query when it holds a relevant document. Each page is ranked by (a)
the normalised mean of its chunks' vectors (what conveyor stores), (b) the vector
of its whole text (the model reads its first 256 tokens), (c) its best chunk (the
ranking that chunk search then grouping by page gives; not one vector a page).

    python bench/pdf.py --page-vectors
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONFIGS = {
    "text only": {"CONVEYOR_PDF_PAGES": "false"},
    "+ pages collection": {},
    "+ page images (png)": {"CONVEYOR_PAGE_IMAGES": "true"},
    "+ page images (webp)": {"CONVEYOR_PAGE_IMAGES": "true", "CONVEYOR_PAGE_IMAGE_FORMAT": "webp"},
}


def make_pdf(path: Path, pages: int) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    from conveyor.testing import prose

    c = canvas.Canvas(str(path), pagesize=A4)
    for number in range(pages):
        y = 800.0
        for paragraph in prose(number, 300).split("\n"):
            for line in textwrap.wrap(paragraph, 95):
                if y > 50:
                    c.drawString(40, y, line)
                y -= 13
        c.showPage()
    c.save()


def _hwm_mb(pid: int | str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def one(pdf: Path) -> dict[str, Any]:
    """In a fresh process: ingest ``pdf`` once with the settings of the environment."""
    from conveyor.app import Conveyor
    from conveyor.settings import Settings

    with tempfile.TemporaryDirectory(prefix="conveyor-bench-pdf-") as home:
        with Conveyor(Settings(home=Path(home))) as cv:
            cv.components.embedder.embed(["warm up the model"])
            started = time.perf_counter()
            summary = cv.ingest([pdf], collection="bench")
            wall = time.perf_counter() - started
            doc = cv.documents()[0]
            slots = getattr(cv.components.extractor, "_slots", {})
            child = max((_hwm_mb(s.process.pid) for s in slots.values()), default=0.0)
            pages = cv.components.vectors.count("bench_pages")
            images = len(list(cv.components.blobs.list(f"artifacts/{doc['id']}/pages/")))
            image_bytes = sum(
                b.size for b in cv.components.blobs.list(f"artifacts/{doc['id']}/pages/")
            )
    return {
        "state": doc["state"],
        "done": summary.done,
        "wall_s": wall,
        "timings": doc["timings"],
        "chunks": doc["chunks"],
        "pages_entries": pages,
        "images": images,
        "image_mb": image_bytes / 1e6,
        "child_peak_mb": child,
        "worker_peak_mb": _hwm_mb("self"),
    }


def throughput(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-pdf-") as tmp:
        pdf = Path(tmp) / f"pages-{args.pages}.pdf"
        make_pdf(pdf, args.pages)
        print(f"{args.pages}-page PDF, ~300 words a page, {pdf.stat().st_size / 1e6:.1f} MB")
        names = [n for n in CONFIGS if args.webp or "webp" not in n]
        print(f"{'':<22} end to end   extract stage          child peak  worker peak")
        rows = []
        for name in names:
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(pdf)],
                env={**os.environ, **CONFIGS[name]},
                capture_output=True,
                text=True,
                check=True,
            )
            row = {"config": name, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(row)
            t = row["timings"]
            extras = f"page vectors {t['embed_pages']:.2f} s" if "embed_pages" in t else ""
            if row["images"]:
                extras = f"{row['images']} images, {row['image_mb']:.0f} MB"
            print(
                f"{name:<22} {args.pages / row['wall_s']:4.1f} pages/s  "
                f"{args.pages / t['extract']:5.1f} pages/s ({t['extract']:4.1f} s)  "
                f"{row['child_peak_mb']:6.0f} MB  {row['worker_peak_mb']:6.0f} MB   {extras}"
                + ("" if row["state"] == "done" else f"  ({row['state']})")
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def page_vectors(args: argparse.Namespace) -> None:
    from _judged import cisi, debian, ndcg_at_k

    from conveyor.chunking import chunk_sections
    from conveyor.components import Components
    from conveyor.extract import Section
    from conveyor.settings import Settings

    with tempfile.TemporaryDirectory(prefix="conveyor-bench-pdf-") as tmp:
        settings = Settings(home=Path(tmp))
        model = Components(settings).local_embedder
        model.load()
        tok = model.tokenizer
        for name, (ids, texts, queries, relevant) in (
            ("cisi", cisi(args.data)),
            ("debian", debian()),
        ):
            pages: list[list[int]] = [[]]  # documents on each page
            size = 0
            for i, n in enumerate(tok.count(texts)):
                if pages[-1] and size + n > args.page_tokens:
                    pages.append([])
                    size = 0
                pages[-1].append(i)
                size += n
            page_text = ["\n\n".join(texts[i] for i in docs) for docs in pages]
            owner, chunk_text = [], []
            for p, text in enumerate(page_text):
                for chunk in chunk_sections(
                    [Section(text)], tok, settings.chunk_size, settings.chunk_overlap
                ):
                    owner.append(p)
                    chunk_text.append(chunk.text)
            chunks = model.embed(chunk_text)
            owners = np.array(owner)
            mean = np.stack([chunks[owners == p].mean(axis=0) for p in range(len(pages))])
            mean /= np.linalg.norm(mean, axis=1, keepdims=True)
            whole = model.embed(page_text)
            q = model.embed(queries)
            page_of = {ids[i]: p for p, docs in enumerate(pages) for i in docs}
            wanted = [{page_of[d] for d in rel if d in page_of} for rel in relevant]
            best = np.full((len(queries), len(pages)), -np.inf, dtype=np.float32)
            np.maximum.at(best.T, owners, (q @ chunks.T).T)
            scores = {"mean of chunks": q @ mean.T, "whole page text": q @ whole.T}
            scores["best chunk (reference)"] = best
            print(
                f"{name}: {len(pages)} pages of ~{args.page_tokens} tokens "
                f"({len(texts)} documents, {len(chunk_text)} chunks), {len(queries)} queries"
            )
            for method, matrix in scores.items():
                ndcg = np.mean(
                    [
                        ndcg_at_k(list(np.argsort(-row)[:10]), want, 10)
                        for row, want in zip(matrix, wanted, strict=True)
                    ]
                )
                print(f"  {method:<24} nDCG@10 {ndcg:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--webp", action="store_true", help="also page images as WebP")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--page-vectors", action="store_true", help="compare page vectors")
    parser.add_argument("--page-tokens", type=int, default=600, help="--page-vectors: page size")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cisi"))
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
    elif args.page_vectors:
        page_vectors(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
