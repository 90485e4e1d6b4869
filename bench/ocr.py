"""OCR throughput: pages per second, and where the time goes.

Generates receipt-like pages (text rendered with PIL, speckle noise, a slight
rotation) and runs conveyor's image extractor on each, then times the steps
separately: decoding the image, orientation detection (Tesseract OSD), the
OCR itself (Tesseract TSV), and parsing.

    python bench/ocr.py              # 20 pages
    python bench/ocr.py --pages 50
"""

from __future__ import annotations

import argparse
import io
import random
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from conveyor.extract import extract
from conveyor.ocr import _png, _run, orientation, parse_tsv

WORDS = ("COFFEE", "BAGEL", "SALAD", "SOUP", "TEA", "MUFFIN", "JUICE", "WRAP", "PASTA", "PIE")


def page(seed: int) -> bytes:
    rng = random.Random(seed)
    lines = [f"STORE NUMBER {seed}", f"{rng.randint(1, 99)} Main Street"]
    lines += [
        f"{rng.choice(WORDS)} {rng.randint(1, 30)}.{rng.randint(0, 99):02d}"
        for _ in range(rng.randint(4, 12))
    ]
    lines.append(f"TOTAL {rng.randint(10, 200)}.{rng.randint(0, 99):02d}")
    font = ImageFont.load_default(size=30)
    image = Image.new("L", (760, 90 + 62 * len(lines)), 250)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 62 * i), line, font=font, fill=20)
    pixels = np.array(image)
    noise = np.random.default_rng(seed).random(pixels.shape) < 0.005
    pixels[noise] = 0
    rotated = Image.fromarray(pixels).rotate(rng.uniform(-2, 2), expand=True, fillcolor=250)
    buffer = io.BytesIO()
    rotated.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    pages = [page(i) for i in range(args.pages)]
    print(f"{args.pages} receipt pages, JPEG, ~760 px wide")

    t = time.perf_counter()
    words = sum(len(extract(p).units["words"]) for p in pages)
    total = time.perf_counter() - t
    print(
        f"extract (OCR + orientation): {total:7.2f} s  {args.pages / total:6.2f} pages/s"
        f"  {words} words"
    )

    steps = {"decode": 0.0, "orientation": 0.0, "ocr": 0.0, "parse": 0.0}
    for data in pages:
        t = time.perf_counter()
        image = Image.open(io.BytesIO(data))
        image.load()
        png = _png(image.convert("L"))
        steps["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        orientation(png)
        steps["orientation"] += time.perf_counter() - t
        t = time.perf_counter()
        tsv = _run(["-l", "eng", "--psm", "3", "tsv"], png, None, "bench")
        steps["ocr"] += time.perf_counter() - t
        t = time.perf_counter()
        parse_tsv(tsv)
        steps["parse"] += time.perf_counter() - t
    whole = sum(steps.values())
    for name, seconds in steps.items():
        print(f"  {name:<12} {seconds:7.2f} s  {100 * seconds / whole:5.1f}%")


if __name__ == "__main__":
    main()
