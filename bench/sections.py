"""Finding the right section of the right manual: nDCG@10 with and without contextual
headers, on generated PDFs whose answers are known.

Six product manuals (reportlab, each with an outline) share one table of contents —
Safety, Charging the battery, Cleaning, Brakes, Storage, Warranty — and each section's
text is about its subject without naming the product, as manuals are written ("Charge
the battery for four hours…"). A query names a product and a subject ("how long to
charge the e-scooter battery"); the one relevant answer is that product's section, and
a hit counts when its chunk is from that document and section. The set is built so
that the document's title matters: it measures what a contextual header can add when
chunks lack their document's name, not how common that is.

    python bench/sections.py                   # both settings, one JSON line each
    python bench/sections.py --headers false   # one of them
    python bench/sections.py --mode hybrid     # dense (default), hybrid or lexical
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _metrics import first_occurrences, mean, mrr_at_k, ndcg_at_k

PRODUCTS = {
    "e-scooter": ("E-Scooter S2 Owner's Manual", 4, "the deck", "the kickstand"),
    "lawnmower": ("Cordless Lawnmower LM40 Manual", 3, "the grass box", "the cutting deck"),
    "drill": ("Cordless Drill D18 Instructions", 1, "the chuck", "the belt clip"),
    "vacuum": ("Robot Vacuum R7 User Guide", 5, "the dust bin", "the side brushes"),
    "e-bike": ("City E-Bike C3 Handbook", 6, "the frame", "the pannier rack"),
    "kettle": ("Smart Kettle K1 Manual", 2, "the jug", "the base plate"),
}
SECTIONS = {
    "Safety": "Read every instruction before first use. Keep children away while it runs. "
    "Do not use it with wet hands or in the rain. Switch it off before touching {part}. "
    "Wear sturdy shoes and do not cover the vents. Inspect {part} for cracks before use.",
    "Charging the battery": "Charge the battery for {hours} hours before first use. Use "
    "only the charger supplied. The light turns green when the battery is full. Do not "
    "charge below five degrees. A full battery lasts about {hours} times twenty minutes.",
    "Cleaning": "Wipe {part} with a damp cloth after every use. Never use a hose or "
    "solvents. Remove dirt from {other} with a soft brush. Let it dry before storing.",
    "Brakes": "Check the brake or stop function before every use. If it stops late, "
    "adjust the cable by turning the barrel half a turn. Replace worn pads at once.",
    "Storage": "Store it indoors, dry and above zero degrees. Charge the battery to half "
    "before storing it for winter. Hang it by {other} or stand it on {part}.",
    "Warranty": "The warranty covers defects for {hours} years from purchase. Keep the "
    "receipt. Damage from misuse, water or accidents is not covered.",
}
QUERIES = {
    "Safety": "safety instructions for the {p}",
    "Charging the battery": "how long to charge the {p} battery",
    "Cleaning": "how do I clean the {p}",
    "Brakes": "adjusting the {p} brakes",
    "Storage": "storing the {p} over winter",
    "Warranty": "{p} warranty period",
}


def make_manuals(folder: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    folder.mkdir(parents=True)
    for name, (title, hours, part, other) in PRODUCTS.items():
        c = canvas.Canvas(str(folder / f"{name}.pdf"), pagesize=A4)
        c.setTitle(title)
        for n, (section, body) in enumerate(SECTIONS.items(), 1):
            c.setFont("Helvetica-Bold", 16)
            c.drawString(50, 800, f"{n} {section}")
            c.bookmarkPage(f"s{n}")
            c.addOutlineEntry(f"{n} {section}", f"s{n}", level=0)
            c.setFont("Helvetica", 10)
            y = 770.0
            text = body.format(part=part, other=other, hours=hours)
            for paragraph in (text, text.replace(". ", ". Note: ", 1)):  # two paragraphs
                line = ""
                for word in paragraph.split():
                    if len(line) + len(word) > 90:
                        c.drawString(50, y, line)
                        y -= 14
                        line = ""
                    line = f"{line} {word}".strip()
                c.drawString(50, y, line)
                y -= 24
            c.showPage()
        c.save()


def evaluate(headers: bool, corpus: Path, home: Path, mode: str, k: int = 10) -> dict[str, Any]:
    os.environ["CONVEYOR_CONTEXTUAL_HEADERS"] = "true" if headers else "false"
    import conveyor

    with conveyor.open(home) as cv:
        started = time.perf_counter()
        summary = cv.ingest([corpus])
        ingest_s = time.perf_counter() - started
        if summary.failed:
            raise SystemExit(f"{summary.failed} documents failed: {summary.failures[:3]}")
        questions = [(p, s, QUERIES[s].format(p=p)) for p in PRODUCTS for s in SECTIONS]
        hits = cv.search_many([q for _, _, q in questions], k=30, mode=mode)  # type: ignore[arg-type]
    ndcg, mrr = [], []
    for (product, section, _), found in zip(questions, hits, strict=True):
        ranked = first_occurrences(
            f"{Path(h.source).stem}/{str(h.metadata.get('section', '')).split(' ', 1)[-1]}"
            for h in found
        )
        relevant = {f"{product}/{section}"}
        ndcg.append(ndcg_at_k(ranked, relevant, k))
        mrr.append(mrr_at_k(ranked, relevant, k))
    return {
        "contextual_headers": headers,
        "mode": mode,
        "documents": len(PRODUCTS),
        "chunks": summary.chunks,
        "queries": len(ndcg),
        f"ndcg@{k}": round(mean(ndcg), 4),
        f"mrr@{k}": round(mean(mrr), 4),
        "ingest_s": round(ingest_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--headers", choices=("true", "false", "both"), default="both")
    parser.add_argument("--mode", choices=("dense", "hybrid", "lexical"), default="dense")
    args = parser.parse_args()
    settings = [True, False] if args.headers == "both" else [args.headers == "true"]
    with tempfile.TemporaryDirectory(prefix="conveyor-sections-") as tmp:
        make_manuals(Path(tmp) / "manuals")
        for headers in settings:
            result = evaluate(
                headers, Path(tmp) / "manuals", Path(tmp) / f"home-{headers}", args.mode
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
