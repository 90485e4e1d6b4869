"""Diarization quality: error rate and speakers found on generated conversations.

espeak-ng voices take turns of 3–15 s (the true turns known); each
conversation goes through conveyor's audio extractor (Whisper + diarization)
and its turns (``transcript.json``) are scored against the truth: the
diarization error rate in 10 ms frames with a 0.25 s collar.

    python bench/speakers.py                       # 1, 2 and 3 voices, seeds 1-3, ~100 s each
    python bench/speakers.py --seconds 300 --seeds 5
"""

from __future__ import annotations

import argparse
import json

from conveyor.extract import extract
from conveyor.extract.speakers import error_rate
from conveyor.testing import conversation, wav

VOICES = {1: ["en-us"], 2: ["en-us+m3", "en-us+f2"], 3: ["en-us+m3", "en-us+f2", "en+m7"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    for count, voices in VOICES.items():
        for seed in range(1, args.seeds + 1):
            samples, truth = conversation(voices, args.seconds, seed=seed)
            result = extract(wav(samples))
            turns = json.loads(result.artifacts["transcript.json"])["turns"]
            der = error_rate(truth, [(t["start"], t["end"], t["speaker"]) for t in turns])
            print(
                f"{count} voices seed {seed}: {len(samples) / 16_000:.0f} s, {len(truth)} turns, "
                f"DER {der:.1%}, speakers found {len(result.metadata['speakers'])}",
                flush=True,
            )


if __name__ == "__main__":
    main()
