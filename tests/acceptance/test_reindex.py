"""``conveyor reindex``: a collection rebuilt under another backend (int8 → fp32, another
vector space) through the queue, while searches keep answering — each from one
generation, the old one with its own model until the switch, the new one after — on
sqlite-vec and on a pgvector server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.app import Conveyor
from conveyor.embedding import OV_INT8
from conveyor.settings import Settings
from tests.acceptance.helpers import BUSY, run, start
from tests.support import buried, write_corpus

TOPICS = ["whales", "volcanoes", "glaciers", "orchards", "lighthouses", "comets"]


@pytest.fixture(params=["sqlite-vec", "pgvector"])
def vectors_url(request: pytest.FixtureRequest) -> str:
    if request.param == "pgvector":
        return str(request.getfixturevalue("pgvector_url"))
    return ""


def test_reindex_switches_generations_while_search_answers_from_one(
    tmp_path: Path, vectors_url: str
) -> None:
    home = tmp_path / "home"
    env = {"CONVEYOR_VECTORS_URL": vectors_url} if vectors_url else {}
    files = {
        f"{topic}-{n}.txt": buried(n, f"This note is about {topic}.", 250)
        for n in range(1)
        for topic in TOPICS
    }
    corpus = write_corpus(tmp_path / "in", files)
    run("ingest", str(corpus), home=home, **env)  # OpenVINO int8, the default
    settings = Settings(home=home, vectors_url=vectors_url or None)
    with Conveyor(settings) as cv:
        before = cv.search("orchards", k=3)
        assert before and {h.collection for h in before} == {"default"}
        chunks = cv.components.vectors.collection("default")
        assert chunks is not None and chunks.model_id.endswith(OV_INT8)

        # fp32 on torch, slowly: the rebuild runs while we search
        rebuild = start(
            "reindex", "--collection", "default", "-j", "1",
            home=home, log=tmp_path / "reindex.log", **{**BUSY, **env},
        )  # fmt: skip
        answers: list[tuple[str, list[str]]] = []
        building_seen = False
        try:
            while rebuild.poll() is None:
                hits = cv.search("orchards", k=3)
                assert hits, "a search during the rebuild found nothing"
                generations = {h.collection for h in hits}
                assert len(generations) == 1, generations  # one generation per answer
                answers.append((generations.pop(), [h.id for h in hits]))
                if not building_seen:
                    status = cv.status()["generations"]
                    building_seen = bool(status) and status[0]["building"]["number"] == 1
                time.sleep(0.05)
        finally:
            if rebuild.poll() is None:
                rebuild.kill()
        log = (tmp_path / "reindex.log").read_text()
        assert rebuild.returncode == 0, log
        assert "switched" in log and "generation 1" in log, log
        assert building_seen, "status never showed the generation being built"

        # the old generation answered with its own model, as before, then the new one
        names = [name for name, _ in answers]
        assert names[0] == "default" and set(names) <= {"default", "default__g1"}
        first_new = names.index("default__g1") if "default__g1" in names else len(names)
        assert all(n == "default" for n in names[:first_new])
        assert all(n == "default__g1" for n in names[first_new:])
        old_ids = [h.id for h in before]
        assert all(ids == old_ids for _, ids in answers[:first_new])
        assert len([n for n in names if n == "default"]) >= 3, names  # it ran meanwhile

        after = cv.search("orchards", k=3)
        assert {h.collection for h in after} == {"default__g1"}
        assert after[0].source.rsplit("/", 1)[-1].startswith("orchards")
        infos = {i.name: i for i in cv.components.vectors.collections()}
        assert "default" not in infos  # dropped after the switch
        new = infos["default__g1"]
        assert not new.model_id.endswith(OV_INT8)  # another vector space, never mixed
        assert cv.components.vectors.count("default__g1") > 0
        assert {d["state"] for d in cv.documents(collection="default")} == {"done"}

    # search, export and status speak of the collection by its name
    out = json.loads(run("status", "--json", home=home, **env).stdout)
    assert out["generations"] == []
    found = json.loads(run("search", "orchards", "--json", home=home, **env).stdout)
    assert found and found[0]["collection"] == "default__g1"


def test_a_worker_on_the_old_settings_cannot_mix_vectors_into_the_new_generation(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    corpus = write_corpus(tmp_path / "in", {"a.txt": "Tides and moons.", "b.txt": "Comets."})
    run("ingest", str(corpus), home=home)
    # the rebuild is asked for fp32, but the worker that takes its jobs runs int8
    out = run("reindex", "--no-wait", "--json", home=home, CONVEYOR_EMBEDDING_BACKEND="onnx")
    started: dict[str, Any] = json.loads(out.stdout)
    assert started["building"]["number"] == 1
    run("worker", "--exit-when-idle", home=home, check=None)
    docs = json.loads(run("documents", "--json", home=home).stdout)
    failed = [d for d in docs if d["state"] == "failed"]
    assert len(failed) == 2 and "restart the workers" in failed[0]["error"], docs
    # the API's overview shows the rebuild, stuck on its failures
    from fastapi.testclient import TestClient

    from conveyor.server.api import create_api

    with (
        Conveyor(Settings(home=home)) as cv,
        TestClient(create_api(conveyor=cv), base_url="http://127.0.0.1") as api,
    ):
        [rebuild] = api.get("/status").json()["rebuilds"]
        assert rebuild == {
            "collection": "default",
            "generation": 1,
            "model": started["building"]["model"],
            "answering": 0,
            "settled": 2,
            "failed": 2,
            "of": 2,
        }
    # search still answers from generation 0; a second rebuild must wait for this one
    assert json.loads(run("search", "tides", "--json", home=home).stdout)[0]["source"]
    again = run("reindex", home=home, check=None, CONVEYOR_EMBEDDING_BACKEND="onnx")
    assert again.returncode != 0 and "being built already" in again.stderr
    run("reindex", "--abandon", home=home)
    assert json.loads(run("status", "--json", home=home).stdout)["generations"] == []
