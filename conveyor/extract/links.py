"""A PDF's links, each with the page it is on.

Every ``/Link`` annotation becomes one entry: ``{"page": 2, "uri": "https://…"}``
for a web link, ``{"page": 2, "to_page": 7}`` for a link inside the document
(an explicit destination, a named one, or a ``GoTo`` action), ``{"page": 2,
"file": "other.pdf"}`` for one into another file; each also has its ``rect``
(PDF points, origin bottom left) and the ``text`` of its ``/Contents`` when it
has one. The pipeline keeps them all as the ``links.json`` artifact and the
first :data:`KEPT` in the document's metadata (``links_with_pages``).
"""

from __future__ import annotations

import json
from typing import Any

KEPT = 1000
"""Links kept in the document's metadata; the artifact holds them all."""
MAX_LINKS = 100_000
"""Links read from one document at most."""


class PageNumbers:
    """Page objects' references → 1-based page numbers, and named destinations, read
    once per document."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self._pages: dict[int, int] | None = None
        self._named: dict[str, Any] | None = None

    def of_reference(self, reference: Any) -> int | None:
        if self._pages is None:
            self._pages = {}
            for n, page in enumerate(self.reader.pages, 1):
                ref = getattr(page, "indirect_reference", None)
                if ref is not None:
                    self._pages.setdefault(ref.idnum, n)
        idnum = getattr(reference, "idnum", None)
        return self._pages.get(idnum) if idnum is not None else None

    def of_name(self, name: str) -> int | None:
        if self._named is None:
            try:
                self._named = dict(self.reader.named_destinations)
            except Exception:  # a damaged name tree: no named destinations
                self._named = {}
        destination = self._named.get(name)
        if destination is None:
            return None
        try:
            number = self.reader.get_destination_page_number(destination)
        except Exception:
            return None
        return number + 1 if number is not None and number >= 0 else None

    def of_destination(self, destination: Any) -> tuple[int | None, str | None]:
        """(page, name) of an explicit (array) or named destination."""
        if isinstance(destination, str | bytes):
            name = destination.decode("latin-1") if isinstance(destination, bytes) else destination
            return self.of_name(name), name
        try:
            first = destination[0]
        except (TypeError, IndexError, KeyError):
            return None, None
        reference = getattr(first, "indirect_reference", None) or first
        return self.of_reference(reference), None


def page_links(page: Any, number: int, numbers: PageNumbers) -> list[dict[str, Any]]:
    """The links on one page, in the order of its annotations."""
    found: list[dict[str, Any]] = []
    annotations = page.get("/Annots")
    if annotations is None:
        return found
    for reference in annotations.get_object():
        try:
            link = _link(reference.get_object(), number, numbers)
        except Exception:  # a broken annotation loses its link, not the page
            continue
        if link is not None:
            found.append(link)
    return found


def _link(annotation: Any, number: int, numbers: PageNumbers) -> dict[str, Any] | None:
    if annotation.get("/Subtype") != "/Link":
        return None
    link: dict[str, Any] = {"page": number}
    action = annotation.get("/A")
    kind = action.get("/S") if action is not None else None
    if kind == "/URI" and "/URI" in action:
        uri = str(action["/URI"]).strip()
        if not uri:
            return None
        link["uri"] = uri
    elif kind == "/GoTo" or (action is None and "/Dest" in annotation):
        destination = action.get("/D") if action is not None else annotation.get("/Dest")
        to_page, name = numbers.of_destination(destination)
        if to_page is None and name is None:
            return None
        link["to_page"] = to_page
        if name:
            link["name"] = name
    elif kind in ("/GoToR", "/Launch"):
        target = action.get("/F")
        if hasattr(target, "get"):  # a file specification dictionary
            target = target.get("/UF") or target.get("/F")
        if not target:
            return None
        link["file"] = str(target)
        remote = action.get("/D") if kind == "/GoToR" else None
        if isinstance(remote, str | bytes):
            link["name"] = remote.decode("latin-1") if isinstance(remote, bytes) else remote
        elif remote is not None and len(remote) and isinstance(remote[0], int):
            link["to_page"] = remote[0] + 1  # another file's page, by its index
    else:
        return None
    rect = annotation.get("/Rect")
    if rect is not None:
        try:
            link["rect"] = [round(float(v), 1) for v in list(rect)[:4]]
        except (TypeError, ValueError):
            pass
    contents = annotation.get("/Contents")
    if contents:
        link["text"] = " ".join(str(contents).split())[:300]
    return link


def encode(links: list[dict[str, Any]]) -> bytes:
    """The ``links.json`` artifact."""
    return json.dumps(links, ensure_ascii=False, indent=1).encode("utf-8")
