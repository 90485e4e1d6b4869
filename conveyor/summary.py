"""A summary and topics for a long text (a recording's transcript).

Offline by default, with the embedding model already loaded: the summary is
the few sentences closest to the text's mean embedding, in their original
order (extractive); topics are the candidate phrases closest to it
(keyphrases, KeyBERT-style, with a penalty for repeating a topic). When an
OpenAI-compatible chat endpoint is configured (``CONVEYOR_LLM_BASE_URL``,
``CONVEYOR_LLM_MODEL``, ``CONVEYOR_LLM_API_KEY``), that model writes them
instead, within a timeout; any failure falls back to the offline method.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .embedding import Embedder
from .exceptions import safe_summary

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just let me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    also okay yeah uh um like well get got going go know think really right thing things one
    two three please send""".split()
)


@dataclass
class Summary:
    summary: str
    topics: list[str]
    method: str  # "extractive" or "llm:<model>"

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "topics": self.topics, "summary_method": self.method}


def _candidates(text: str, longest: int = 3, keep: int = 400) -> list[str]:
    """Phrases of 1–3 words between stopwords: the ``keep`` most frequent, from the
    whole text (not just its opening), first seen first among equals."""
    seen: dict[str, int] = {}
    for sentence in _SENTENCE.split(text):
        run: list[str] = []
        for word in [*_WORD.findall(sentence), ""]:
            if word and word.lower() not in STOPWORDS and len(word) > 2:
                run.append(word.lower())
                continue
            for n in range(1, longest + 1):
                for i in range(len(run) - n + 1):
                    phrase = " ".join(run[i : i + n])
                    seen[phrase] = seen.get(phrase, 0) + 1
            run = []
    ranked = sorted(seen, key=lambda p: -seen[p])  # stable: first seen first among equals
    return ranked[:keep]


def extractive(
    text: str, embedder: Embedder, *, sentences: int = 3, topics: int = 5, candidates: int = 400
) -> Summary:
    """The central sentences and phrases of ``text`` by the embedding model, chosen among
    its ``candidates`` most frequent phrases."""
    parts = [s.strip() for s in _SENTENCE.split(text) if len(s.split()) >= 3]
    if not parts:
        return Summary(text.strip()[:300], [], "extractive")
    vectors = embedder.embed(parts)
    centre = vectors.mean(axis=0)
    centre /= np.linalg.norm(centre) or 1.0
    best = sorted(np.argsort(-(vectors @ centre))[:sentences])
    summary = " ".join(parts[i] for i in best)

    phrases = _candidates(text, keep=candidates)
    chosen: list[str] = []
    if phrases:
        pv = embedder.embed(phrases)
        relevance = pv @ centre
        picked: list[int] = []
        while len(picked) < min(topics, len(phrases)):
            score = relevance.copy()
            if picked:  # maximal marginal relevance: not five ways of saying one thing
                score -= 0.6 * np.max(pv @ pv[picked].T, axis=1)
            score[picked] = -np.inf
            picked.append(int(np.argmax(score)))
        chosen = [phrases[i] for i in picked]
    return Summary(summary, chosen, "extractive")


def with_llm(
    text: str, *, base_url: str, model: str, api_key: str | None, timeout: float
) -> Summary:
    """Ask an OpenAI-compatible chat endpoint for a summary and topics (JSON)."""
    import httpx

    prompt = (
        "Summarise this transcript in at most three sentences and list up to five short "
        'topics. Answer with JSON only: {"summary": "...", "topics": ["..."]}\n\n' + text[:12000]
    )
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(
        base_url.rstrip("/") + "/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0},
        headers=headers,
        timeout=timeout,
    )
    response.raise_for_status()
    content = response.json()["choices"][0]["message"]["content"]
    found = json.loads(content[content.index("{") : content.rindex("}") + 1])
    topics = [str(t) for t in found.get("topics", [])][:5]
    return Summary(str(found["summary"]).strip(), topics, f"llm:{model}")


def summarise(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    llm_base_url: str | None = None,
    llm_model: str | None = None,
    llm_api_key: str | None = None,
    llm_timeout: float = 30.0,
) -> Summary:
    """The LLM's summary when one is configured and answers, else the extractive one."""
    text = " ".join(t.strip() for t in texts if t.strip())
    if llm_base_url and llm_model:
        try:
            return with_llm(
                text,
                base_url=llm_base_url,
                model=llm_model,
                api_key=llm_api_key,
                timeout=llm_timeout,
            )
        except Exception as exc:
            log.warning("LLM summary failed, using the offline one: %s", safe_summary(exc))
    return extractive(text, embedder)
