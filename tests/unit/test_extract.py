"""Unit tests for conveyor.extract: sniffing, text, Markdown, HTML and PDF."""

from __future__ import annotations

import codecs
import importlib
import io
import random
import time
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf._page import PageObject
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from conveyor.exceptions import (
    ConveyorError,
    CorruptFile,
    EmptyDocument,
    EncryptedFile,
    PermanentError,
    UnsupportedType,
)
from conveyor.extract import EXTRACTORS, Extracted, Section, extract, register, sniff
from conveyor.extract.html import close_open_title
from conveyor.extract.pdf import NO_TEXT_LAYER, normalise_page_text

# -- helpers ------------------------------------------------------------------


def make_pdf(pages: list[list[str]], encrypt: str | None = None, link: str | None = None) -> bytes:
    """A PDF with one page per list of lines; an empty list gives a page without text."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, encrypt=encrypt)
    pdf.setTitle("Quarterly Report")
    pdf.setAuthor("Ada Lovelace")
    for number, lines in enumerate(pages, start=1):
        y = 760
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 14
        if not lines:
            pdf.rect(100, 100, 200, 200)  # something drawn, but no text
        if link and number == 1:
            pdf.linkURL(link, (72, 600, 300, 620), relative=0)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def image_only_pdf() -> bytes:
    """A one-page PDF holding only a picture (what a scanner produces)."""
    from PIL import Image

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    picture = Image.new("RGB", (40, 20), (200, 30, 30))
    pdf.drawImage(ImageReader(picture), 72, 600, width=200, height=100)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


REPORT_PAGES = [
    [
        "Quarterly results",
        "The committee reviewed the budget and found an exam-",
        "ple of careful spending in every department this year,",
        "which the board welcomed at its meeting.",
    ],
    [],
    ["Page three mentions zebras   and   giraffes."],
]


@pytest.fixture(scope="module")
def report_pdf() -> bytes:
    return make_pdf(REPORT_PAGES, link="https://example.com/report")


def assert_one_line(exc: BaseException) -> None:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message


@pytest.fixture
def scratch_kind() -> Iterator[str]:
    """A kind name registered by a test and removed afterwards."""
    yield "scratch"
    EXTRACTORS.pop("scratch", None)


# -- sniffing -----------------------------------------------------------------


def test_sniff_trusts_bytes_not_names(report_pdf: bytes) -> None:
    assert sniff(report_pdf, "notes.txt") == "pdf"
    assert sniff(b"just some words\n", "report.pdf") == "text"
    assert sniff(b"junk before header\n" + report_pdf) == "pdf"


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"\x00\x00\x00\x18ftypheic" + bytes(40), "image/heic"),
        (b"PK\x03\x04" + bytes(26) + b"word/document.xml", "wordprocessingml"),
        (b"PK\x03\x04" + bytes(40), "application/zip"),
        (b"\x1f\x8b\x08" + bytes(40), "application/gzip"),
        (b"\x7fELF" + bytes(40), "application/x-executable"),
    ],
)
def test_sniff_names_known_binary_types(data: bytes, mime: str) -> None:
    with pytest.raises(UnsupportedType, match=mime) as caught:
        sniff(data, "innocent.txt")
    assert_one_line(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40),
        b"ID3\x04" + bytes(40),
        b"\xff\xfb\x90" + bytes(40),
        b"OggS" + bytes(40),
        b"fLaC" + bytes(40),
        b"\x00\x00\x00\x18ftypM4A " + bytes(40),
        b"\x00\x00\x00\x18ftypmp42" + bytes(40),
    ],
)
def test_sniff_audio_by_bytes(data: bytes) -> None:
    assert sniff(data, "innocent.txt") == "audio"


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(40),
        b"\xff\xd8\xff\xe0" + bytes(40),
        b"GIF89a" + bytes(40),
        b"II*\x00" + bytes(40),
        b"MM\x00*" + bytes(40),
    ],
)
def test_sniff_images_for_ocr(data: bytes) -> None:
    assert sniff(data, "notes.txt") == "image"


def test_sniff_other_images_say_what_to_do() -> None:
    with pytest.raises(UnsupportedType, match=r"image/heic is not supported \(convert"):
        sniff(b"\x00\x00\x00\x18ftypheic" + bytes(40))


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  "])
def test_sniff_empty(data: bytes) -> None:
    with pytest.raises(EmptyDocument):
        sniff(data)
    with pytest.raises(EmptyDocument):
        extract(data)


def test_sniff_binary_data() -> None:
    with pytest.raises(UnsupportedType, match="binary data is not a supported format"):
        sniff(b"hello\x00world\x00\x01\x02" * 20, "a.txt")
    noise = random.Random(7).randbytes(4096)
    with pytest.raises(UnsupportedType, match="binary data"):
        sniff(noise.replace(b"\x00", b"\x01"))


def test_sniff_text_encodings() -> None:
    assert sniff("café crème\n".encode("cp1252")) == "text"
    assert sniff(b"\xef\xbb\xbfhello") == "text"
    assert sniff("\ufeffhello wörld".encode("utf-16-le")) == "text"
    assert extract("na\u00efve caf\u00e9".encode("cp1252")).sections[0].text == "naïve café"


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("Привет, мир! Это проверка кодировки простого текста.\n" * 3, "cp1251"),
        ("Zażółć gęślą jaźń, powiedział Łukasz w środę rano.\n" * 3, "cp1250"),
        ("日本語のテキストです。文字コードの検出を試します。\n" * 3, "shift_jis"),
        ("Καλημέρα κόσμε, αυτό είναι ένα δοκιμαστικό κείμενο.\n" * 3, "cp1253"),
        ("El señor español comió piñas el miércoles.\n" * 3, "cp1252"),
        ("Hello wörld, text written as UTF-16 without a mark.\n" * 3, "utf-16-le"),
    ],
)
def test_undeclared_legacy_encodings_are_detected(text: str, codec: str) -> None:
    data = text.encode(codec)
    assert sniff(data, "notes.txt") == "text"
    result = extract(data, "notes.txt")
    assert result.sections[0].text == text.strip()
    assert (
        codecs.lookup(result.metadata["encoding"]) == codecs.lookup(codec) or codec == "shift_jis"
    )


def test_damaged_utf8_stays_utf8() -> None:
    data = "Grüße aus München, schöne Straße.\n".encode() * 20 + b"\xff tail \xc3"
    result = extract(data, kind="text")
    assert result.metadata["encoding"] == "utf-8"
    assert result.sections[0].text.startswith("Grüße aus München")
    assert "\ufffd tail" in result.sections[0].text


@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE html><p>x</p>",
        b"\xef\xbb\xbf  <!-- generated -->\n<HTML><body>x</body></HTML>",
        b"Some preamble\n<body><p>x</p></body>",
    ],
)
def test_sniff_html(data: bytes) -> None:
    assert sniff(data) == "html"


def test_sniff_html_name_hint_only_for_tag_soup() -> None:
    assert sniff(b"<p>fragment</p>", "page.html") == "html"
    assert sniff(b"<p>fragment</p>") == "text"


def test_sniff_markdown_from_content_and_hint() -> None:
    assert sniff(b"# Title\n\nSome text.\n", "notes.txt") == "markdown"
    assert sniff(b"See [the docs](https://x.example) now.") == "markdown"
    assert sniff(b"```\ncode\n```\n") == "markdown"
    assert sniff(b"plain words only\n", "README.md") == "markdown"
    assert sniff(b"plain words only\n- a list\n- of things\n") == "text"
    # Markdown that shows an HTML sample in a code block stays Markdown.
    assert sniff(b"# Embedding\n\n```html\n<html><body>x</body></html>\n```\n") == "markdown"


# -- dispatcher ----------------------------------------------------------------


def test_unknown_kind_is_unsupported() -> None:
    with pytest.raises(UnsupportedType, match="'spreadsheet' is not supported") as caught:
        extract(b"hello", kind="spreadsheet")
    assert_one_line(caught.value)


def test_explicit_kind_skips_sniffing() -> None:
    result = extract(b"# not a heading here", kind="text")
    assert result.kind == "text" and result.sections[0].text == "# not a heading here"


def test_registry_accepts_new_kinds_and_wraps_library_errors(scratch_kind: str) -> None:
    @register(scratch_kind)
    def broken(data: bytes, options: dict[str, Any]) -> Extracted:
        raise ValueError("bad thing\nwith a second line")

    assert EXTRACTORS[scratch_kind] is broken
    with pytest.raises(CorruptFile, match=r"damaged scratch file: ValueError: bad") as caught:
        extract(b"x", kind=scratch_kind)
    assert_one_line(caught.value)
    assert isinstance(caught.value, ConveyorError)


def test_registry_passes_options(scratch_kind: str) -> None:
    @register(scratch_kind)
    def echo(data: bytes, options: dict[str, Any]) -> Extracted:
        return Extracted(scratch_kind, "x/y", [Section(data.decode())], dict(options))

    result = extract(b"abc", kind=scratch_kind, options={"k": 1})
    assert result.metadata == {"k": 1} and result.text == "abc"


# -- text -----------------------------------------------------------------------


def test_plain_text_normalised() -> None:
    data = b"line one\r\nline two\x07\r\n\r\n\r\n\r\nsecond\tpara   \rthird\x00"
    result = extract(data, kind="text")
    assert result.mime == "text/plain" and len(result.sections) == 1
    assert result.sections[0].text == "line one\nline two\n\nsecond\tpara\nthird"
    assert "title" not in result.metadata


# -- Markdown -------------------------------------------------------------------

MARKDOWN = b"""---
title: From front matter
author: Grace
---
Intro with *emphasis*, **strong**, ~~gone~~ and `snake_case_name` code.

# The Real Title

## Section *Two*

- first [item link](https://example.com/a "t")
- second ![a diagram](img/d.png)
* [ ] task <span>html</span> &amp; more

> quoted text

```python
def twice(x):
    return x * 2  # *stays*
```

See <https://example.com/auto> and [again](https://example.com/a).
"""


def test_markdown_to_plain_text() -> None:
    result = extract(MARKDOWN, "doc.txt")
    text = result.sections[0].text
    assert result.kind == "markdown" and result.mime == "text/markdown"
    assert "Intro with emphasis, strong, gone and snake_case_name code." in text
    assert "\n\nThe Real Title\n\nSection Two\n\n" in text
    assert "first item link\nsecond a diagram\ntask html & more" in text
    assert "quoted text" in text and ">" not in text
    assert "def twice(x):\n    return x * 2  # *stays*" in text
    assert "```" not in text and "#" not in text.replace("# *stays*", "")
    assert "---" not in text and "From front matter" not in text
    assert result.metadata["title"] == "The Real Title"
    assert result.metadata["author"] == "Grace"
    assert result.metadata["links"] == ["https://example.com/a", "https://example.com/auto"]


def test_markdown_setext_title_and_front_matter_title() -> None:
    assert extract(b"Big Title\n=========\nbody text\n").metadata["title"] == "Big Title"
    data = b"---\ntitle: 'Only FM'\n---\nbody [x](y)\n"
    result = extract(data)
    assert result.metadata["title"] == "Only FM" and result.sections[0].text == "body x"


def test_markdown_without_text_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        extract(b"---\ntitle: x\n---\n\n<!-- nothing -->\n", "a.md")


def test_markdown_structures_from_the_parser() -> None:
    source = b"""# Guide

| name | size |
|------|-----:|
| a    | 1    |
| b    | 2    |

Read [the docs][docs] or mail <ops@example.com>.

<details><summary>More</summary>

Hidden **detail** here.
</details>

<script>alert("not text")</script>

***

[docs]: https://example.com/docs
[unused]: https://example.com/unused
"""
    result = extract(source, "guide.md")
    text = result.sections[0].text
    assert "name | size\na | 1\nb | 2" in text
    assert "Read the docs or mail ops@example.com." in text
    assert "More" in text and "Hidden detail here." in text
    assert "alert" not in text and "<" not in text and "[" not in text and "|--" not in text
    assert result.metadata["links"] == [
        "https://example.com/docs",
        "mailto:ops@example.com",
        "https://example.com/unused",
    ]


def test_markdown_deeply_nested_lists_and_quotes_keep_their_text() -> None:
    items = "".join("  " * level + f"- item{level}\n" for level in range(30))
    text = extract(items.encode(), "outline.md").sections[0].text
    assert text.split("\n") == [f"item{level}" for level in range(30)]
    quotes = "".join(">" * (level + 1) + f" said{level}\n\n" for level in range(30))
    text = extract(quotes.encode(), "quotes.md").sections[0].text
    assert text.split("\n\n") == [f"said{level}" for level in range(30)]


@pytest.mark.parametrize(
    "source",
    ["[" * 10_000, "![" * 10_000, "*_" * 10_000, "[a](" * 10_000, "> " * 10_000 + "x"],
)
def test_markdown_hostile_input_is_bounded(source: str) -> None:
    started = time.monotonic()
    try:
        text = extract(source.encode(), "x.md").sections[0].text
        assert len(text) <= len(source)
    except EmptyDocument as exc:
        assert_one_line(exc)
    assert time.monotonic() - started < 10


# -- HTML -----------------------------------------------------------------------

HTML = b"""<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8"><title>  Caf\xc3\xa9   Menu </title>
<meta name="description" content="Today's dishes">
<meta name="author" content="Chef">
<style>body { color: red }</style>
<script>document.write("<p>SCRIPTTEXT</p>")</script>
</head><body>
<h1>Welcome &amp; enjoy &eacute;</h1>
<p>Fresh   <b>bread</b>
and <a href="https://example.com/bread">butter</a>, see <a href="/menu">menu</a>.</p>
<div hidden>HIDDEN1</div><span style="color:red; display : none">HIDDEN2</span>
<nav aria-hidden="true">HIDDEN3</nav><noscript>NOSCRIPT</noscript><template>TPL</template>
<svg><title>SVGTITLE</title><text>SVGTEXT</text></svg><!-- COMMENT -->
<ul><li>soup<li>salad</ul>
<pre>  two
    spaces</pre>
<p>line<br>break <a href="#top">top</a> <a href="javascript:x()">js</a> <a href="/menu">dup</a>
<div><p>unclosed <i>italic
"""


def test_html_visible_text_only() -> None:
    result = extract(HTML, "menu.txt")
    text = result.sections[0].text
    assert result.kind == "html" and result.mime == "text/html"
    for hidden in ("SCRIPT", "HIDDEN", "NOSCRIPT", "TPL", "SVG", "COMMENT", "color"):
        assert hidden not in text
    assert text.startswith("Welcome & enjoy é\n\nFresh bread and butter, see menu.")
    assert "\n\nsoup\n\nsalad\n\n" in text
    assert "  two\n    spaces" in text
    assert "line\nbreak top js dup" in text
    assert text.endswith("unclosed italic")


def test_html_metadata_and_links() -> None:
    metadata = extract(HTML).metadata
    assert metadata["title"] == "Café Menu"
    assert metadata["description"] == "Today's dishes"
    assert metadata["author"] == "Chef"
    assert metadata["language"] == "en"
    assert metadata["links"] == ["https://example.com/bread", "/menu"]


def test_html_tolerates_broken_markup() -> None:
    result = extract(b"<html><title>Unclosed<body><p>visible <b>text</i></div>")
    assert result.metadata["title"] == "Unclosed"
    assert result.sections[0].text == "visible text"
    cut_off = extract(b"<html><body><p>kept</p><!-- open comment <p>gone")
    assert cut_off.sections[0].text == "kept"
    assert extract(b"<html><body>kept " + b"<a " * 5000).sections[0].text == "kept"


def test_html_declared_charset_and_empty_page() -> None:
    page = '<html><head><meta charset="windows-1252"></head><body>caf\xe9</body></html>'
    result = extract(page.encode("cp1252"))
    assert result.sections[0].text == "café" and result.metadata["encoding"] == "cp1252"
    with pytest.raises(EmptyDocument, match="no visible text"):
        extract(b"<html><head><title>t</title></head><body><script>x</script></body></html>")


def test_html_undeclared_charset_is_detected_and_declared_one_wins() -> None:
    body = "<p>Привет, мир! Это страница без объявленной кодировки.</p>" * 3
    page = f"<html><body>{body}</body></html>".encode("cp1251")
    result = extract(page)
    assert result.metadata["encoding"] == "cp1251"
    assert result.sections[0].text.startswith("Привет, мир!")
    declared = b'<html><head><meta charset="iso-8859-1"></head><body>\xc0 bient\xf4t</body></html>'
    result = extract(declared)
    assert result.metadata["encoding"] == "iso8859-1" and result.text == "À bientôt"


def test_html_parsed_as_browsers_do() -> None:
    page = b"""<html><head><title>Parsed</title></head><body>
    <table><tr><td>cell one<td>cell two</table>
    <p>x &lt; y &copy 2024 &#x41;&#66;</p>
    <textarea>typed text</textarea>
    <iframe><p>IFRAME</p></iframe><noframes><p>NOFRAMES</p></noframes>
    <p>a<b>b<p>c</b>d</p>
    </body></html>trailing words"""
    result = extract(page)
    text = result.sections[0].text
    assert "cell one cell two" in text
    assert "x < y \u00a9 2024 AB" in text
    assert "typed text" in text
    assert "IFRAME" not in text and "NOFRAMES" not in text and "<p>" not in text
    assert "ab\n\ncd" in text
    assert text.endswith("trailing words")
    assert result.metadata["title"] == "Parsed"


def test_html_unclosed_title_is_ended_at_the_next_tag_only() -> None:
    assert close_open_title("<title>T<body>x") == "<title>T</title><body>x"
    closed = "<title>T</title><body>x"
    assert close_open_title(closed) == closed
    assert close_open_title("<title>never ends") == "<title>never ends"


def test_html_deep_nesting_is_walked_without_recursion() -> None:
    depth = 5_000  # far past Python's recursion limit
    page = b"<html><body>" + b"<div>" * depth + b"<p>deep down</p>" + b"</div>" * depth
    page += b"<p>after</p></body></html>"
    assert extract(page).sections[0].text == "deep down\n\nafter"


def test_html_that_was_quadratic_for_the_old_parser_is_fast() -> None:
    # html.parser re-scanned this once per character: 400 KB took minutes.
    page = b"<html><body><p>kept</p>" + b'<a b=">" ' * 44_444
    started = time.monotonic()
    result = extract(page)
    assert time.monotonic() - started < 5
    assert result.sections[0].text == "kept"


def test_html_hostile_input_fails_with_one_line_reasons() -> None:
    with pytest.raises(EmptyDocument, match="no visible text") as caught:
        extract(b"<html><body>" + b"<a " * 50_000)
    assert_one_line(caught.value)
    with pytest.raises(EmptyDocument) as caught:
        extract(b"<!DOCTYPE html><html><body><!-- " + b"x" * 100_000)
    assert_one_line(caught.value)


# -- PDF ------------------------------------------------------------------------


def test_pdf_pages_text_and_dehyphenation(report_pdf: bytes) -> None:
    result = extract(report_pdf, "report.txt")
    assert result.kind == "pdf" and result.mime == "application/pdf"
    assert [section.page for section in result.sections] == [1, 3]
    first = result.sections[0].text
    assert first.startswith("Quarterly results\n")
    assert "found an example of careful spending in every department this year, which" in first
    assert result.sections[1].text == "Page three mentions zebras and giraffes."


def test_pdf_metadata_and_links(report_pdf: bytes) -> None:
    metadata = extract(report_pdf).metadata
    assert metadata["title"] == "Quarterly Report"
    assert metadata["author"] == "Ada Lovelace"
    assert metadata["page_count"] == 3
    assert metadata["pages_without_text"] == [2]
    assert metadata["links"] == ["https://example.com/report"]
    assert metadata["created"][:2] == "20" and "T" in metadata["created"]
    assert "page_errors" not in metadata


def test_normalise_page_text() -> None:
    raw = "A  long line of text that wraps onto the next line of the pa-\nragraph here.\nEnd."
    assert normalise_page_text(raw) == (
        "A long line of text that wraps onto the next line of the paragraph here.\n\nEnd."
    )
    assert normalise_page_text("Heading\nBody\n\n\nNext") == "Heading\nBody\n\nNext"


def test_pdf_encrypted() -> None:
    locked = make_pdf([["top secret words"]], encrypt="secret")
    with pytest.raises(EncryptedFile, match="password-protected") as caught:
        extract(locked)
    assert_one_line(caught.value)
    with pytest.raises(EncryptedFile, match="password given is wrong"):
        extract(locked, options={"password": "nope"})
    unlocked = extract(locked, options={"password": "secret"})
    assert unlocked.sections[0].text == "top secret words"


def test_pdf_encrypted_with_empty_user_password_opens() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["open words"]]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    result = extract(buffer.getvalue())
    assert result.sections[0].text == "open words" and result.metadata["encrypted"] is True


def test_pdf_truncated(report_pdf: bytes) -> None:
    with pytest.raises(CorruptFile, match="truncated or damaged PDF: ") as caught:
        extract(report_pdf[: len(report_pdf) // 2])
    assert_one_line(caught.value)


def test_pdf_without_pages() -> None:
    buffer = io.BytesIO()
    PdfWriter().write(buffer)
    with pytest.raises(EmptyDocument, match="PDF has no pages") as caught:
        extract(buffer.getvalue())
    assert_one_line(caught.value)


def test_pdf_without_text_layer_and_without_ocr() -> None:
    with pytest.raises(EmptyDocument) as caught:
        extract(image_only_pdf(), options={"ocr": False})
    assert str(caught.value) == NO_TEXT_LAYER
    assert_one_line(caught.value)


def test_pdf_max_pages(report_pdf: bytes) -> None:
    with pytest.raises(PermanentError, match="3 pages, more than the limit of 2") as caught:
        extract(report_pdf, options={"max_pages": 2})
    assert_one_line(caught.value)
    assert extract(report_pdf, options={"max_pages": 3}).metadata["page_count"] == 3
    with pytest.raises(PermanentError, match="max_pages must be a whole number"):
        extract(report_pdf, options={"max_pages": "lots"})


def test_pdf_page_errors(monkeypatch: pytest.MonkeyPatch, report_pdf: bytes) -> None:
    original = PageObject.extract_text
    calls = {"n": 0}

    def flaky(self: PageObject, *args: Any, **kwargs: Any) -> str:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("font\nmissing")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    result = extract(report_pdf)
    assert [section.page for section in result.sections] == [1]
    assert result.metadata["pages_without_text"] == [2, 3]
    assert result.metadata["page_errors"] == [{"page": 3, "error": "ValueError: font missing"}]


def test_pdf_every_page_failing_is_corrupt(
    monkeypatch: pytest.MonkeyPatch, report_pdf: bytes
) -> None:
    def broken(self: PageObject, *args: Any, **kwargs: Any) -> str:
        raise ValueError("cannot decode stream")

    monkeypatch.setattr(PageObject, "extract_text", broken)
    with pytest.raises(CorruptFile, match="no page could be read") as caught:
        extract(report_pdf)
    assert_one_line(caught.value)


def test_pdf_garbage_after_header() -> None:
    with pytest.raises(CorruptFile) as caught:
        extract(b"%PDF-1.7\n1 0 obj\n<< garbage", kind="pdf")
    assert_one_line(caught.value)


def test_ascii_text_is_judged_as_every_character_is() -> None:
    """``_bad_ratio``'s fast path for ASCII counts what its per-character rule counts:
    controls other than tab, newlines, form feed and vertical tab."""
    sniffing = importlib.import_module("conveyor.extract.sniff")
    rng = random.Random(7)
    for _ in range(500):
        text = "".join(
            chr(rng.choice([rng.randrange(128), rng.randrange(32), 32]))
            for _ in range(rng.randrange(1, 200))
        )
        bad = sum(
            1
            for ch in text
            if ch not in "\t\n\r\f\v" and unicodedata.category(ch) in ("Cc", "Cn", "Co", "Cs")
        )
        assert sniffing._bad_ratio(text) == bad / len(text), text
    assert sniffing._bad_ratio("plain words\n\tand a tab") == 0.0
    assert sniffing._bad_ratio("a\x00b\x07") == 0.5
