"""A document's description: title, summary, keywords, type and language.

With an OpenAI-compatible chat endpoint configured (``CONVEYOR_LLM_BASE_URL``,
``CONVEYOR_LLM_MODEL``, ``CONVEYOR_LLM_API_KEY``), one call per document sends
its outline and first pages, cut to ``CONVEYOR_LLM_MAX_INPUT_TOKENS``, and
asks for the five fields as one JSON object; the answer is validated against
:class:`Fields`. A malformed answer is asked for once more (the model is told
what was wrong); a second malformed answer, a timeout or any failure of the
call gives the offline description, with the reason in ``llm_error``. The
tokens the calls used are recorded (``llm_usage``). The official ``openai``
client is used when installed (``pip install 'conveyor[llm]'``), else plain
HTTP.

Offline, the title is the PDF's own (unless it is a file name or a
placeholder) or its first heading; the summary and keywords are extractive,
by the embedding model (:func:`conveyor.summary.extractive`); the type comes
from a word of the title ("… User Guide"), telling words in the text ("amount
due"), else the nearest of :data:`TYPES` by the embedding model;
the language from py3langid (or a stopword count when it is missing).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator

from .embedding import Embedder
from .exceptions import safe_summary
from .summary import extractive

log = logging.getLogger(__name__)

TYPES: dict[str, str] = {
    "manual": "a user manual or guide with instructions, maintenance steps and procedures",
    "report": "a report presenting findings, figures and recommendations",
    "paper": "a scientific paper with an abstract, methods, results and references",
    "invoice": "an invoice billing a customer with amounts due, tax and payment terms",
    "receipt": "a receipt for a purchase listing items and the total paid",
    "contract": "a contract or agreement between parties with clauses and obligations",
    "letter": "a letter addressed to a person, with a greeting and a signature",
    "form": "a form with fields to fill in",
    "presentation": "presentation slides with short bullet points",
    "book": "a book with chapters",
    "article": "a news or magazine article",
}
"""Document types the offline method chooses from (an LLM may name others)."""

_TELLING: list[tuple[str, tuple[tuple[str, ...], ...]]] = [
    ("invoice", (("invoice number",), ("invoice no",), ("amount due",), ("invoice", "bill to"))),
    ("receipt", (("change due",), ("receipt", "subtotal", "total"), ("cashier", "total"))),
    ("contract", (("hereinafter",), ("the parties agree",), ("this agreement", "party"))),
    ("paper", (("abstract", "references"),)),
    ("manual", (("user manual",), ("owner's manual",), ("instructions for use",))),
]
"""Words that tell a type: all the words of one of its tuples, in the document's start."""

_TITLE_WORDS: dict[str, str] = {
    "manual": "manual",
    "handbook": "manual",
    "guide": "manual",
    "instructions": "manual",
    "invoice": "invoice",
    "receipt": "receipt",
    "contract": "contract",
    "agreement": "contract",
    "report": "report",
    "letter": "letter",
    "form": "form",
}
"""A word in the title that names the type ("Robot Vacuum R7 User Guide")."""

_NOT_TITLES = re.compile(
    r"^(untitled|title|document\d*|microsoft word - .*|.*\.(docx?|pdf|tex|odt|rtf|indd))$",
    re.IGNORECASE,
)
OFFLINE = "offline"
CHARS_PER_TOKEN = 4
"""The estimate used for the LLM's budget (its own tokenizer is unknown)."""
OFFLINE_CHARS = 20_000
"""Text read for the offline summary and keywords (the document's start)."""


class Fields(BaseModel):
    """What the LLM must answer: the schema its JSON is validated against."""

    title: str = Field(min_length=1, max_length=300)
    summary: str = Field(min_length=1, max_length=3000)
    keywords: list[str] = Field(max_length=20)
    type: str = Field(min_length=1, max_length=60)
    language: str = Field(pattern=r"^[a-z]{2,3}$")

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        return [k.strip() for k in value if k.strip()][:12]

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return " ".join(value.lower().split())


@dataclass
class LlmConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 30.0
    max_input_tokens: int = 3000


@dataclass
class Description:
    title: str | None
    summary: str
    keywords: list[str]
    type: str
    language: str
    method: str
    """``offline`` or ``llm:<model>``."""
    usage: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def as_metadata(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "summary": self.summary,
            "keywords": self.keywords,
            "type": self.type,
            "language": self.language,
            "description_method": self.method,
        }
        if self.title:
            found["title"] = self.title
        if self.usage:
            found["llm_usage"] = self.usage
        if self.error:
            found["llm_error"] = self.error
        return found


# -- offline --------------------------------------------------------------------------


def document_title(metadata: Mapping[str, Any], texts: Sequence[str] = ()) -> str | None:
    """The PDF's own title unless it is a placeholder, else the first top heading, else a
    short first line."""
    own = " ".join(str(metadata.get("title") or "").split())
    if own and not _NOT_TITLES.match(own):
        return own[:300]
    outline = metadata.get("outline") or []
    if outline:
        top = min(int(h.get("level", 0)) for h in outline)
        return next(str(h["title"]) for h in outline if int(h.get("level", 0)) == top)
    for text in texts:
        line = text.strip().split("\n", 1)[0].strip()
        if line:
            return line if len(line) <= 120 and not line.endswith(".") else None
    return None


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text``'s language; ``und`` when there is too little text."""
    sample = text[:5000]
    if sum(ch.isalpha() for ch in sample) < 20:
        return "und"
    try:
        import py3langid
    except ImportError:
        return _by_stopwords(sample)
    return str(py3langid.classify(sample)[0])


_STOPWORDS = {
    "en": "the and of to in is that for with as on are this be by",
    "de": "der die und das ist nicht mit den von zu ein eine auf für dem",
    "fr": "le la les et des est une dans pour que qui sur du pas par",
    "es": "el la los las y de que en es una por para con del se",
    "it": "il la che di e è per una con non del della sono gli le",
    "nl": "de het en een van is dat op te in voor met zijn niet",
    "pt": "o a os as e de que em um uma para com não do da",
}


def _by_stopwords(text: str) -> str:
    words = re.findall(r"[^\W\d_]+", text.lower())
    scores = {lang: sum(w in set(stop.split()) for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] >= 3 else "und"


_LABELS: dict[str, np.ndarray] = {}


def document_type(text: str, summary: str, embedder: Embedder, title: str | None = None) -> str:
    """A word of the title that names a type, else telling words in the text, else the
    nearest of :data:`TYPES` by the embedding model ("other" when none is near)."""
    for word in re.findall(r"[a-z]+", (title or "").lower()):
        if word in _TITLE_WORDS:
            return _TITLE_WORDS[word]
    lower = text[:8000].lower()
    for kind, alternatives in _TELLING:
        if any(all(w in lower for w in words) for words in alternatives):
            return kind
    key = embedder.model_id
    if key not in _LABELS:
        _LABELS[key] = embedder.embed(list(TYPES.values()))
    vector = embedder.embed([summary or text[:1000]])[0]
    scores = _LABELS[key] @ vector
    return list(TYPES)[int(np.argmax(scores))] if float(np.max(scores)) >= 0.15 else "other"


def offline(metadata: Mapping[str, Any], texts: Sequence[str], embedder: Embedder) -> Description:
    text = "\n\n".join(texts)[:OFFLINE_CHARS]
    found = extractive(text, embedder, sentences=3, topics=8, candidates=150)
    title = document_title(metadata, texts)
    return Description(
        title=title,
        summary=found.summary,
        keywords=found.topics,
        type=document_type(text, found.summary, embedder, title),
        language=detect_language(text),
        method=OFFLINE,
    )


# -- with an LLM ----------------------------------------------------------------------

PROMPT = """Describe the document below. Answer with one JSON object and nothing else:
{{"title": "...", "summary": "at most three sentences", "keywords": ["up to eight"],
"type": "one or two words: manual, report, paper, invoice, receipt, contract, letter, form,
presentation, book, article or another", "language": "ISO 639-1 code, e.g. en"}}

{outline}Its first pages:
{text}"""


def prompt(
    metadata: Mapping[str, Any], sections: Sequence[tuple[int | None, str]], budget: int
) -> str:
    """The request's text: the outline and the first pages, within ``budget`` tokens
    (estimated at :data:`CHARS_PER_TOKEN` characters each)."""
    chars = budget * CHARS_PER_TOKEN
    outline = ""
    headings = metadata.get("outline") or []
    if headings:
        lines = [f"{'  ' * int(h.get('level', 0))}{h['title']} (p. {h['page']})" for h in headings]
        outline = "Its outline:\n" + "\n".join(lines)[: chars // 4] + "\n\n"
    room = max(0, chars - len(outline))
    parts, used = [], 0
    for page, text in sections:
        piece = (f"[page {page}]\n" if page else "") + text.strip()
        if used + len(piece) > room:
            parts.append(piece[: max(0, room - used)])
            break
        parts.append(piece)
        used += len(piece) + 2
    return PROMPT.format(outline=outline, text="\n\n".join(parts))


class Malformed(ValueError):
    """The model's answer is not the JSON object asked for."""


def parse(content: str) -> Fields:
    try:
        start, end = content.index("{"), content.rindex("}") + 1
        return Fields.model_validate(json.loads(content[start:end]))
    except (ValueError, ValidationError) as exc:
        reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else "not JSON"
        raise Malformed(f"the answer is not the JSON asked for ({reason})") from None


def _chat(config: LlmConfig, messages: list[dict[str, str]]) -> tuple[str, dict[str, int]]:
    """One chat completion: (content, usage)."""
    try:
        import openai
    except ImportError:
        return _chat_http(config, messages)
    client = openai.OpenAI(
        base_url=config.base_url,
        api_key=config.api_key or "none",
        timeout=config.timeout,
        max_retries=0,
    )
    try:
        response = client.chat.completions.create(
            model=config.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
        )
    finally:
        client.close()
    usage = response.usage
    counts = (
        {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        if usage is not None
        else {}
    )
    return response.choices[0].message.content or "", counts


def _chat_http(config: LlmConfig, messages: list[dict[str, str]]) -> tuple[str, dict[str, int]]:
    import httpx

    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    response = httpx.post(
        config.base_url.rstrip("/") + "/chat/completions",
        json={"model": config.model, "messages": messages, "temperature": 0},
        headers=headers,
        timeout=config.timeout,
    )
    response.raise_for_status()
    body = response.json()
    usage = body.get("usage") or {}
    counts = {k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens") if k in usage}
    return str(body["choices"][0]["message"]["content"] or ""), counts


def with_llm(config: LlmConfig, request: str, usage: dict[str, int]) -> Fields:
    """Ask, validate, ask once more if malformed; ``usage`` counts the calls and their
    tokens as they come. Raises :class:`Malformed` after two bad answers, or whatever
    the call raised (a timeout, a refusal)."""
    messages = [{"role": "user", "content": request}]
    usage.update(prompt_tokens=0, completion_tokens=0, calls=0)
    for attempt in range(2):
        usage["calls"] += 1  # counted before it is made: a call that timed out counts
        content, counts = _chat(config, messages)
        for key, value in counts.items():
            usage[key] = usage.get(key, 0) + int(value or 0)
        try:
            return parse(content)
        except Malformed as exc:
            if attempt:
                raise Malformed(f"{exc}, twice") from None
            messages += [
                {"role": "assistant", "content": content[:4000]},
                {
                    "role": "user",
                    "content": f"That was not valid: {exc}. Answer with the JSON object only.",
                },
            ]
    raise AssertionError("unreachable")


def describe(
    metadata: Mapping[str, Any],
    sections: Sequence[tuple[int | None, str]],
    embedder: Embedder,
    llm: LlmConfig | None = None,
) -> Description:
    """The document's description: the LLM's when one is configured and answers well,
    else the offline one. Never raises for the LLM's sake."""
    texts = [text for _, text in sections]
    usage: dict[str, int] = {}
    error = None
    if llm is not None:
        try:
            fields = with_llm(llm, prompt(metadata, sections, llm.max_input_tokens), usage)
            return Description(
                title=fields.title,
                summary=fields.summary,
                keywords=fields.keywords,
                type=fields.type,
                language=fields.language,
                method=f"llm:{llm.model}",
                usage=usage,
            )
        except Exception as exc:  # a timeout, a refusal, nonsense: the offline one
            error = safe_summary(f"{type(exc).__name__}: {exc}", limit=200)
            log.warning("document description by the LLM failed, using the offline one: %s", error)
    found = offline(metadata, texts, embedder)
    found.usage, found.error = usage, error
    return found
