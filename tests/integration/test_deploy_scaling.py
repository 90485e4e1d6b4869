"""docs/DEPLOY.md's autoscaling recipes: parsed, and the KEDA query run against a real
PostgreSQL queue, where it must count what `conveyor scale-hint` counts. Also the
fleet-wide cap on the PostgreSQL queue, with receivers racing from many threads."""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path

import psycopg
import yaml

from conveyor.catalog import open_catalog
from conveyor.queue.postgres import PostgresQueue
from conveyor.scaling import signals

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "DEPLOY.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DEPLOY.read_text(), flags=re.S)


def _scaled_objects() -> list[dict]:
    docs = [d for block in _blocks("yaml") for d in yaml.safe_load_all(block) if d]
    return [d for d in docs if d.get("kind") == "ScaledObject"]


def _trigger(kind: str) -> dict:
    [found] = [t for s in _scaled_objects() for t in s["spec"]["triggers"] if t["type"] == kind]
    return found


def test_the_keda_query_counts_what_scale_hint_counts(postgres_url: str) -> None:
    trigger = _trigger("postgresql")
    query, target = trigger["metadata"]["query"], float(trigger["metadata"]["targetQueryValue"])
    assert trigger["authenticationRef"]["name"] == "conveyor-postgres"
    queue = PostgresQueue(postgres_url)
    other = PostgresQueue(postgres_url, name="other")  # another queue's jobs never count
    catalog = open_catalog(postgres_url)
    try:
        queue.send_many([{"n": i} for i in range(20)])
        other.send_many([{"n": i} for i in range(5)])
        queue.send({"late": 1}, delay=3600)  # delayed: not yet work
        leases = queue.receive(6, visibility_timeout=600)  # running: still work
        queue.dead_letter(leases[0], "bad")  # dead: never work again
        queue.receive(1, visibility_timeout=0.001)  # a lease that runs out: visible again
        with psycopg.connect(postgres_url) as conn:
            [(count,)] = conn.execute(query).fetchall()
        depth = queue.depth()
        assert (depth.visible, depth.in_flight, depth.delayed, depth.dead) == (14, 5, 1, 1)
        assert count == depth.visible + depth.in_flight == 19
        now = signals(queue, catalog, stale_after=20)
        assert math.ceil(count / target) == now.desired(per_worker=target) == 3
        assert now.oldest_visible_age is not None and now.oldest_visible_age >= 0
    finally:
        queue.close()
        other.close()
        catalog.close()


def test_the_sqs_scaled_object_and_the_ecs_policy_are_well_formed() -> None:
    sqs = _trigger("aws-sqs-queue")["metadata"]
    assert sqs["queueURL"].startswith("https://sqs.") and int(sqs["queueLength"]) > 0
    assert sqs["scaleOnInFlight"] == "true" and sqs["awsRegion"] in sqs["queueURL"]
    for scaled in _scaled_objects():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        assert scaled["spec"]["scaleTargetRef"]["name"] == "conveyor-worker"
    [policy] = [json.loads(b) for b in _blocks("json") if "CustomizedMetricSpecification" in b]
    metrics = policy["CustomizedMetricSpecification"]["Metrics"]
    returned = [m for m in metrics if m["ReturnData"]]
    assert len(returned) == 1 and policy["TargetValue"] > 0
    ids = {m["Id"] for m in metrics if "MetricStat" in m}
    expression = returned[0]["Expression"]
    assert set(re.findall(r"\b[a-z][a-z_0-9]*\b", expression)) <= ids
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m}
    assert names == {"ApproximateNumberOfMessagesVisible", "RunningTaskCount"}

    def evaluate(visible: float, tasks: float) -> float:
        python = expression.replace("IF(", "choose(")
        return float(eval(python, {"choose": lambda c, a, b: a if c else b}, locals()))

    assert evaluate(40, 5) == 8 and evaluate(40, 0) == 40  # no task yet: never divides by 0


def test_the_cap_holds_on_postgres_across_racing_receivers(postgres_url: str) -> None:
    queues = [PostgresQueue(postgres_url, max_in_flight=3) for _ in range(4)]
    try:
        queues[0].send_many([{"n": i} for i in range(30)])
        got: list[int] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def take(queue: PostgresQueue) -> None:
            start.wait()
            leases = queue.receive(4, visibility_timeout=600)
            with lock:
                got.append(len(leases))

        threads = [threading.Thread(target=take, args=(q,)) for q in queues for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(got) == 3 and queues[0].depth().in_flight == 3
    finally:
        for q in queues:
            q.close()


def test_uncapped_receivers_are_untouched(postgres_url: str) -> None:
    cap = 1
    capped, free = PostgresQueue(postgres_url, max_in_flight=cap), PostgresQueue(postgres_url)
    try:
        free.send_many([{"n": i} for i in range(5)])
        assert len(capped.receive(5, visibility_timeout=60)) == cap
        assert len(free.receive(5, visibility_timeout=60)) == 4  # no cap of its own
    finally:
        capped.close()
        free.close()
