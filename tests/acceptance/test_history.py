"""A document's processing history through the installed CLI: ingest, change the file,
ingest again — ``conveyor documents PATH --history`` lists both versions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from conveyor.testing import make_pdf, prose

from .helpers import run


def test_a_changed_file_has_two_versions_with_their_hashes_and_chunks(tmp_path: Path) -> None:
    home, docs = tmp_path / "home", tmp_path / "docs"
    docs.mkdir()
    note = docs / "note.txt"
    note.write_text(prose(3, 60))
    make_pdf(str(docs / "two.pdf"), ["Quarterly revenue grew.", "The glacier retreated."])
    first = "sha256:" + hashlib.sha256(note.read_bytes()).hexdigest()
    run("ingest", str(docs), "--run", "one", home=home)
    note.write_text(prose(4, 900))  # longer: more chunks
    second = "sha256:" + hashlib.sha256(note.read_bytes()).hexdigest()
    run("ingest", str(docs), "--run", "two", home=home)

    out = json.loads(run("documents", str(note), "--history", "--json", home=home).stdout)
    versions = out["versions"]
    assert [(v["run"], v["outcome"], v["content_hash"]) for v in versions] == [
        ("one", "done", first),
        ("two", "done", second),
    ]
    assert 1 <= versions[0]["chunks"] < versions[1]["chunks"]
    assert versions[0]["at"] <= versions[1]["at"] and versions[1]["at"].endswith("+00:00")
    [states] = [[e["to_state"] for e in out["events"]]]
    assert states == ["queued", "running", "done"] * 2

    pdf = json.loads(
        run("documents", str(docs / "two.pdf"), "--history", "--json", home=home).stdout
    )
    assert [(v["outcome"], v["pages"]) for v in pdf["versions"]] == [("done", 2), ("unchanged", 2)]

    text = run("documents", str(note), "--history", home=home).stdout
    assert "VERSION" in text and first[7:19] in text and second[7:19] in text
    assert "queued → running: a worker took it" in text
    missing = run("documents", str(docs / "nope.txt"), "--history", home=home, check=2)
    assert "no document" in missing.stderr
    alone = run("documents", "--history", home=home, check=2)
    assert "give a DOCUMENT" in alone.stderr
