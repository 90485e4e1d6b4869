"""HTML extraction time and peak memory: a 100,000-deep ``<div>`` nest, and a large page.

Each case is written to a file, then a fresh Python process reads it and runs
``conveyor.extract.extract(data)``; peak memory is that process's high-water
mark (``ru_maxrss``, which sees the C parsers' allocations as well as Python's)
above what it held with the input read. Cases:

* ``nested``: ``<div>`` opened ``--depth`` times (a word every 1,000 levels),
  text at the bottom, then every ``</div>``;
* ``unclosed``: the same nest with no closing tags;
* ``wide``: an ordinary large page, ``--paragraphs`` paragraphs of prose with
  links, emphasis, lists and a table every 50 paragraphs, under a normal head.

    python bench/html_nested.py
    python bench/html_nested.py --depth 100000 --paragraphs 20000 --json

On the shared 2-core box, three runs each (seconds, peak MiB above the input):
html.parser (before) nested 0.74-0.85 s +13.6, unclosed 0.32-0.46 s +13.4,
wide 0.83-0.96 s +25; lexbor (now) nested 26-31 s +22.6, unclosed 25-28 s
+21.6, wide 0.42-0.62 s +63. lexbor's tree builder is quadratic in nesting
depth (20,000 levels: 0.4 s); the extraction child's time limit bounds it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CASES = ("nested", "unclosed", "wide")


def nested(depth: int, closed: bool = True) -> bytes:
    """``<div>`` nested ``depth`` deep, a word every 1,000 levels, text at the bottom."""
    parts = [b"<!DOCTYPE html><html><head><title>Deep</title></head><body>"]
    for level in range(depth):
        parts.append(b"<div>")
        if level % 1000 == 0:
            parts.append(b"level %d " % level)
    parts.append(b"<p>the bottom of the nest</p>")
    if closed:
        parts.append(b"</div>" * depth)
        parts.append(b"</body></html>")
    return b"".join(parts)


def wide(paragraphs: int) -> bytes:
    """An ordinary large page: prose paragraphs with inline markup, lists and tables."""
    words = (
        "the committee reviewed budget river mountain library archive signal "
        "harbour lantern orchard quarterly careful spending department"
    ).split()
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>A large ordinary page</title>"
        '<meta name="description" content="Many paragraphs">'
        "<style>p { margin: 0 }</style><script>var x = 1;</script></head><body>"
        "<nav><a href='/'>home</a> <a href='/about'>about</a></nav><main>"
    ]
    for i in range(paragraphs):
        sentence = " ".join(words[(i + j) % len(words)] for j in range(40))
        parts.append(
            f"<p>Paragraph {i}: {sentence} <b>bold {i}</b> and "
            f'<a href="https://example.com/{i % 500}">link {i}</a>.</p>'
        )
        if i % 50 == 0:
            parts.append(f"<ul><li>item {i}<li>item {i + 1}</ul>")
            parts.append(f"<table><tr><th>k</th><th>v</th></tr><tr><td>{i}</td><td>x</td></tr>")
            parts.append("</table>")
    parts.append("</main><footer>the end</footer></body></html>")
    return "".join(parts).encode()


def build(case: str, depth: int, paragraphs: int) -> bytes:
    if case == "nested":
        return nested(depth)
    if case == "unclosed":
        return nested(depth, closed=False)
    return wide(paragraphs)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, path: str) -> dict[str, Any]:
    """One case in this process: seconds, peak MiB above the baseline, outcome."""
    from conveyor.extract import extract

    extract(b"<html><body><p>warm up</p></body></html>")
    with open(path, "rb") as file:
        data = file.read()
    before = _maxrss_mib()
    started = time.perf_counter()
    try:
        result = extract(data)
        outcome = f"ok: {len(result.text):,} characters of text"
    except Exception as exc:  # the figure to report, whatever it is
        outcome = f"{type(exc).__name__}: {str(exc)[:160]}"
    seconds = time.perf_counter() - started
    return {
        "case": case,
        "input_mb": round(len(data) / 1e6, 2),
        "seconds": round(seconds, 3),
        "peak_mib": round(_maxrss_mib() - before, 1),
        "outcome": outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=100_000, help="nesting depth")
    parser.add_argument("--paragraphs", type=int, default=20_000, help="paragraphs, wide page")
    parser.add_argument("--case", choices=CASES, action="append", help="(default: all)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per case")
    parser.add_argument("--json", action="store_true", help="one JSON object per case")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_case(*args.child)))
        return
    folder = tempfile.TemporaryDirectory(prefix="conveyor-html-")
    for case in args.case or CASES:
        path = Path(folder.name) / f"{case}.html"
        path.write_bytes(build(case, args.depth, args.paragraphs))
        command = [sys.executable, __file__, "--child", case, str(path)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=args.timeout, check=False
            )
            lines = done.stdout.strip().splitlines()
            if done.returncode == 0 and lines:
                row = json.loads(lines[-1])
            else:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                row = {"case": case, "outcome": f"process exited {done.returncode}: {tail}"}
        except subprocess.TimeoutExpired:
            row = {"case": case, "outcome": f"still running after {args.timeout:g} s, stopped"}
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            figures = (
                f"{row['input_mb']:>6} MB in  {row['seconds']:>8.3f} s  "
                f"peak +{row['peak_mib']:>7.1f} MiB  "
                if "seconds" in row
                else ""
            )
            print(f"{case:<9} {figures}{row['outcome']}", flush=True)
        path.unlink()
    folder.cleanup()


if __name__ == "__main__":
    main()
