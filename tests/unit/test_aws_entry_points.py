"""The Lambda handler and run-job with the fake model: retries, time, merging, input forms.

The real model, corrupt files and the CLI are in tests/integration/test_aws_lambda.py
and tests/acceptance/test_run_job.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lambda_events import LambdaContext, ScriptedContext, ids, sqs_event, sqs_record

from conveyor.aws import lambda_handler
from conveyor.aws.run_job import BadInput, execution_label, parse_input, run_one
from conveyor.exceptions import ConfigurationError
from conveyor.ids import document_id
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


class Flaky(FakeEmbedder):
    """Fails with an unknown error the first ``n`` calls (a model server hiccup)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def embed(self, texts):
        if self.left > 0:
            self.left -= 1
            raise RuntimeError("model server hiccup")
        return super().embed(texts)


def _settings(home: Path, **kw) -> Settings:
    base = {
        "home": home,
        "chunk_size": 60,
        "chunk_overlap": 10,
        "retry_base_seconds": 0.05,
        "embedding_cache": False,
        "isolate_extraction": False,
        "max_receives": 3,
        "lambda_reserve_seconds": 5.0,
    }
    base.update(kw)
    return Settings(**base)


@pytest.fixture
def warm(home: Path) -> Iterator[lambda_handler.Warm]:
    lambda_handler.reset()
    state = lambda_handler.warm(_settings(home), embedder=Flaky(0))
    yield state
    lambda_handler.reset()


def _job(path: Path, **kw) -> dict:
    return {"source": path.as_uri(), "collection": "default", "run": "r1", **kw}


def _doc(warm: lambda_handler.Warm, path: Path) -> dict:
    doc = warm.components.catalog.get(document_id("default", path.as_uri()))
    assert doc is not None
    return doc


def test_transient_failure_is_retried_by_sqs_then_fails_at_max_receives(
    warm: lambda_handler.Warm, tmp_path: Path
) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Hedgehogs hibernate through the winter.")
    warm.components.__dict__["local_embedder"].left = 100  # every embed fails
    first = sqs_record(_job(f), receive_count=1)
    response = lambda_handler.handler(sqs_event(first), LambdaContext())
    assert ids(response) == [first["messageId"]]
    doc = _doc(warm, f)
    assert (doc["state"], doc["stage"], doc["error_kind"]) == ("queued", "retry", "unknown")
    assert "hiccup" in doc["error"]

    # the redrive policy's last delivery: the catalog records the failure, SQS drops it
    last = sqs_record(_job(f), receive_count=3, message_id=first["messageId"])
    assert ids(lambda_handler.handler(sqs_event(last), LambdaContext())) == []
    doc = _doc(warm, f)
    assert doc["state"] == "failed" and "hiccup" in doc["error"]


def test_a_retry_that_works_is_done(warm: lambda_handler.Warm, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Otters hold hands while they sleep.")
    warm.components.__dict__["local_embedder"].left = 1
    record = sqs_record(_job(f))
    assert ids(lambda_handler.handler(sqs_event(record), LambdaContext())) == [record["messageId"]]
    again = sqs_record(_job(f), receive_count=2, message_id=record["messageId"])
    assert ids(lambda_handler.handler(sqs_event(again), LambdaContext())) == []
    assert _doc(warm, f)["state"] == "done"
    assert warm.components.vectors.count("default") == 1


def test_time_running_out_returns_the_rest_unstarted(
    warm: lambda_handler.Warm, tmp_path: Path
) -> None:
    files = []
    for i, text in enumerate(["Comets have icy tails.", "Moles dig tunnels.", "Figs ripen."]):
        files.append(tmp_path / f"{i}.txt")
        files[-1].write_text(text)
    records = [sqs_record(_job(f)) for f in files]
    # 60 s left before the first record, then 4 s: below the 5 s reserve
    context = ScriptedContext([60_000, 4_000])
    response = lambda_handler.handler(sqs_event(*records), context)
    assert ids(response) == [r["messageId"] for r in records[1:]]
    assert _doc(warm, files[0])["state"] == "done"  # merged in the reserve
    catalog = warm.components.catalog
    for f in files[1:]:  # untouched: not failed, not even known
        assert catalog.get(document_id("default", f.as_uri())) is None
    assert catalog.counts()["failed"] == 0


def test_no_time_at_all_starts_nothing_and_merges_nothing(
    warm: lambda_handler.Warm, tmp_path: Path
) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Starfish regrow their arms.")
    record = sqs_record(_job(f))
    response = lambda_handler.handler(sqs_event(record), LambdaContext(millis=1_000))
    assert ids(response) == [record["messageId"]]
    assert warm.components.catalog.documents() == []


def test_bad_messages_are_recorded_not_retried(warm: lambda_handler.Warm, tmp_path: Path) -> None:
    f = tmp_path / "good.txt"
    f.write_text("Puffins nest on sea cliffs.")
    good = sqs_record(_job(f))
    no_source = sqs_record({"collection": "default", "run": "r1"})
    bad_name = sqs_record(_job(f, collection="no spaces allowed"))
    not_object = sqs_record("[1, 2, 3]")
    sns_garbage = sqs_record({"Type": "Notification", "MessageId": "m", "Message": "oops"})
    test_event = sqs_record(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b", "RequestId": "x"}
    )
    response = lambda_handler.handler(
        sqs_event(good, no_source, bad_name, not_object, sns_garbage, test_event), LambdaContext()
    )
    assert ids(response) == []
    failed = {d["source"]: d for d in warm.components.catalog.documents(state="failed")}
    prefix = "sqs://conveyor-jobs/"
    assert set(failed) == {
        prefix + r["messageId"] for r in (no_source, bad_name, not_object, sns_garbage)
    }
    assert "no 'source'" in failed[prefix + no_source["messageId"]]["error"]
    assert "invalid collection name" in failed[prefix + bad_name["messageId"]]["error"]
    assert "not an object" in failed[prefix + not_object["messageId"]]["error"]
    assert failed[prefix + not_object["messageId"]]["metadata"]["body"] == "[1, 2, 3]"
    assert "SNS message is not JSON" in failed[prefix + sns_garbage["messageId"]]["error"]
    assert _doc(warm, f)["state"] == "done"  # the S3 test event left no trace
    assert len(warm.components.catalog.documents()) == 5


def test_sns_envelope_is_unwrapped(warm: lambda_handler.Warm, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Geckos climb glass walls.")
    envelope = {"Type": "Notification", "MessageId": "m", "Message": json.dumps(_job(f))}
    assert ids(lambda_handler.handler(sqs_event(sqs_record(envelope)), LambdaContext())) == []
    assert _doc(warm, f)["state"] == "done"


def test_pending_deltas_wait_for_the_lock_holder_or_a_later_invocation(
    warm: lambda_handler.Warm, tmp_path: Path
) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Bats navigate by echoes.")
    catalog = warm.components.catalog
    assert catalog.acquire_lock("compactor:default", "another-lambda", 60.0)
    response = lambda_handler.handler(sqs_event(sqs_record(_job(f))), LambdaContext())
    assert ids(response) == []  # the message is done with: its delta is durable
    doc = _doc(warm, f)
    assert (doc["state"], doc["stage"]) == ("running", "merge")
    assert catalog.pending_collections() == ["default"]

    catalog.release_lock("compactor:default", "another-lambda")
    assert ids(lambda_handler.handler(sqs_event(), LambdaContext())) == []  # an empty batch
    assert _doc(warm, f)["state"] == "done"
    assert catalog.pending_collections() == []


def test_not_an_sqs_event_is_a_configuration_error(warm: lambda_handler.Warm) -> None:
    with pytest.raises(ConfigurationError, match="not an SQS event"):
        lambda_handler.handler({"source": "file:///x"}, LambdaContext())


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("CONVEYOR_LAMBDA_RESERVE_SECONDS", "soon", "lambda_reserve_seconds"),
        ("CONVEYOR_BLOBS_URL", "ftp://user:pw@host/x", "ftp://user:***@host/x"),
    ],
)
def test_a_bad_setting_fails_at_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, home: Path, variable: str, value: str, named: str
) -> None:
    lambda_handler.reset()
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=re.escape(named)) as caught:
        lambda_handler.handler(sqs_event(), LambdaContext())
    assert ":pw@" not in str(caught.value)
    lambda_handler.reset()


# -- run-job ---------------------------------------------------------------


def test_run_job_input_forms() -> None:
    sf = parse_input(
        '{"FileURI": "s3://bkt/in/a.pdf", "collection": "reports", '
        '"execution_name": "exec-1", "Other": "ignored"}',
        default_collection="default",
    )
    assert (sf.job.source, sf.job.collection, sf.job.run) == (
        "s3://bkt/in/a.pdf",
        "reports",
        "exec-1",
    )
    assert sf.execution_name == "exec-1"

    message = parse_input(
        '{"source": "file:///d/a.txt", "run": "nightly"}',
        default_collection="default",
        execution_name="arn:aws:states:eu-west-1:1:execution:ingest:2024 06 01",
    )
    assert (message.job.run, message.execution_name) == ("nightly", "2024-06-01")
    assert message.job.collection == "default"

    plain = parse_input('{"source": "/d/a.txt"}', default_collection="c")
    assert plain.execution_name == plain.job.run == "adhoc"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1]", "must be a JSON object"),
        ('{"collection": "c"}', "no 'source'"),
        ('{"FileURI": ""}', "FileURI"),
        ('{"FileURI": "/a", "collection": "a b"}', "invalid collection name"),
        ('{"FileURI": "/a", "execution_name": "///"}', "no letter or digit"),
    ],
)
def test_run_job_bad_input(text: str, reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        parse_input(text, default_collection="default")


def test_execution_label() -> None:
    assert execution_label("arn:aws:states:us-east-1:1:execution:sm:run-7") == "run-7"
    assert execution_label("a b/c") == "a-b-c"


def test_run_one_retries_a_transient_failure_here(home: Path, tmp_path: Path) -> None:
    from conveyor.components import Components

    f = tmp_path / "a.txt"
    f.write_text("Penguins slide on their bellies.")
    components = Components(_settings(home), local_embedder=Flaky(2))
    try:
        one = parse_input(json.dumps({"FileURI": f.as_uri()}), default_collection="default")
        outcome = run_one(components, one, poll=0.02)
        assert outcome.status == "done" and outcome.ok
        assert outcome.result["EmbeddingsGenerated"] == 1
        assert components.catalog.get(one.document_id)["attempts"] == 3
        stored = json.loads(components.blobs.get(outcome.key))
        assert stored == outcome.result
        assert outcome.key == f"ingestion_output/adhoc/sf-results/{one.document_id}.json"
    finally:
        components.close()


def test_the_slowest_record_so_far_guards_the_next_but_never_the_first(
    warm: lambda_handler.Warm, tmp_path: Path
) -> None:
    """A container whose slowest record ran near the timeout still makes progress."""
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    files[0].write_text("Moths fly toward the lamp.")
    files[1].write_text("Ants carry leaves home.")
    warm.longest = 100.0  # an earlier record took 100 s; 60 s are left
    records = [sqs_record(_job(f)) for f in files]
    response = lambda_handler.handler(sqs_event(*records), LambdaContext(millis=60_000))
    assert ids(response) == [records[1]["messageId"]]
    assert _doc(warm, files[0])["state"] == "done"
    assert warm.components.catalog.get(document_id("default", files[1].as_uri())) is None


def test_run_job_takes_an_s3_event_naming_one_object() -> None:
    from lambda_events import s3_notification, s3_record

    one = parse_input(
        json.dumps(s3_notification(s3_record("bkt", "in/red flower.pdf"))),
        default_collection="default",
        execution_name="exec-9",
    )
    assert (one.job.source, one.job.run) == ("s3://bkt/in/red flower.pdf", "exec-9")
    record = parse_input(
        json.dumps({**s3_record("bkt", "a.txt"), "collection": "c"}), default_collection="d"
    )
    assert (record.job.source, record.job.collection) == ("s3://bkt/a.txt", "c")
    for many in (
        s3_notification(s3_record("bkt", "a.txt"), s3_record("bkt", "b.txt")),
        s3_notification(s3_record("bkt", "a.txt", event="ObjectRemoved:Delete")),
    ):
        with pytest.raises(BadInput, match="run-job takes exactly one"):
            parse_input(json.dumps(many), default_collection="default")


def test_a_batchs_records_are_embedded_together(
    warm: lambda_handler.Warm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small records of one batch go through the model in one call, as a worker's
    group does; each is still settled, merged and acked on its own."""
    model = warm.components.__dict__["local_embedder"]
    calls: list[int] = []
    embed = model.embed

    def counted(texts: list[str]) -> Any:
        calls.append(len(texts))
        return embed(texts)

    monkeypatch.setattr(model, "embed", counted)
    files = []
    for i, text in enumerate(["Otters hold hands.", "Crows use tools.", "Bees dance.", "Owls"]):
        files.append(tmp_path / f"{i}.txt")
        files[-1].write_text(text)
    response = lambda_handler.handler(
        sqs_event(*[sqs_record(_job(f)) for f in files]), LambdaContext(millis=60_000)
    )
    assert ids(response) == []
    assert {_doc(warm, f)["state"] for f in files} == {"done"}
    assert calls == [4]  # one call for the four records' chunks
