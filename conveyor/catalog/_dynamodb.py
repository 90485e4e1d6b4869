"""The DynamoDB catalog's tables, and how its values become attributes and back.

Every table is pay-per-request and created on first use (``CreateTable``, then
waiting until it is active; another process creating it at the same moment is
fine). What the hot path looks up by something other than the key has a
global secondary index, so no worker or compactor scans a table:

=================  ===================  =============================================
table              key                  indexes (hash, range)
=================  ===================  =============================================
``documents``      ``id``               ``state`` (state, updated_at), ``collection``
                                        (collection, updated_at), ``run`` (run, updated_at)
``runs``           ``id``
``deltas``         ``id`` (number)      ``pending`` (pending_in, id) — only pending
                                        deltas carry ``pending_in``, their collection;
                                        ``pending_all`` (pending_all, id); ``document``
                                        (document_id, id); ``state`` (state, id)
``meta``           ``key``              counters (delta and compaction ids), the parts
                                        of a delivery merged so far
``compactions``    ``id`` (number)      ``newest`` (all, id)
``cache``          ``model``, ``hash``
``workers``        ``id``
``locks``          ``name``
``measurements``   ``id``               ``finished`` (all, finished_at), ``run`` (run,
                                        finished_at)
=================  ===================  =============================================
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from ..exceptions import ConfigurationError
from .measurements import DYNAMO_TABLE as DYNAMO_MEASUREMENTS

S, N, B = "S", "N", "B"
_FLOATS = {
    "created_at",
    "updated_at",
    "read_at",
    "applied_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "leased_until",
}
"""Time columns: read back as floats, whatever form DynamoDB keeps the number in."""

TABLES: dict[str, tuple[list[tuple[str, str]], dict[str, tuple[str, str, str, str]]]] = {
    # name: ([(key attribute, type), range?], {index: (hash, type, range, type)})
    "documents": (
        [("id", S)],
        {
            "state": ("state", S, "updated_at", N),
            "collection": ("collection", S, "updated_at", N),
            "run": ("run", S, "updated_at", N),
        },
    ),
    "runs": ([("id", S)], {}),
    "deltas": (
        [("id", N)],
        {
            "pending": ("pending_in", S, "id", N),
            "pending_all": ("pending_all", S, "id", N),
            "document": ("document_id", S, "id", N),
            "state": ("state", S, "id", N),
        },
    ),
    "meta": ([("key", S)], {}),
    "compactions": ([("id", N)], {"newest": ("all", S, "id", N)}),
    "cache": ([("model", S), ("hash", S)], {}),
    "workers": ([("id", S)], {}),
    "locks": ([("name", S)], {}),
    "measurements": DYNAMO_MEASUREMENTS,  # jobs' measurements (conveyor.catalog.measurements)
}


def table_spec(name: str, table: str) -> dict[str, Any]:
    """``CreateTable``'s arguments for ``table`` named ``name``."""
    keys, indexes = TABLES[table]
    types = dict(keys)
    for hash_key, hash_type, range_key, range_type in indexes.values():
        types[hash_key], types[range_key] = hash_type, range_type
    spec: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": k, "AttributeType": t} for k, t in types.items()
        ],
        "KeySchema": [
            {"AttributeName": k, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, (k, _) in enumerate(keys)
        ],
    }
    if indexes:
        spec["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index,
                "KeySchema": [
                    {"AttributeName": h, "KeyType": "HASH"},
                    {"AttributeName": r, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, (h, _, r, _) in indexes.items()
        ]
    return spec


def ensure_tables(client: Any, prefix: str, timeout: float = 120.0) -> dict[str, str]:
    """Create the tables that are missing; ``{table: its name}`` once all are active."""
    names = {table: f"{prefix}-{table}" for table in TABLES}
    from botocore.exceptions import ClientError

    for table, name in names.items():
        try:
            client.describe_table(TableName=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            try:
                client.create_table(**table_spec(name, table))
            except ClientError as again:
                if again.response["Error"]["Code"] != "ResourceInUseException":
                    raise  # another process is creating it: wait below
    deadline = time.monotonic() + timeout
    for name in names.values():
        while client.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":
            if time.monotonic() > deadline:
                raise ConfigurationError(f"DynamoDB table {name} did not become active")
            time.sleep(1.0)
    return names


# -- values <-> attributes ----------------------------------------------------------


def encode(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute (numbers exactly, as their text)."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {N: str(value) if not isinstance(value, float) else repr(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {B: bytes(value)}
    if isinstance(value, str):
        return {S: value}
    if isinstance(value, set | frozenset):
        return {"SS": sorted(value)}
    raise TypeError(f"cannot store {type(value).__name__} in a DynamoDB attribute")


def decode(attribute: dict[str, Any]) -> Any:
    [(kind, value)] = attribute.items()
    if kind == N:
        number = Decimal(value)
        return (
            int(number)
            if number == number.to_integral_value() and "." not in value
            else float(number)
        )
    if kind == B:
        return bytes(value)
    if kind == "SS":
        return set(value)
    if kind == "NULL":
        return None
    return value


def item(values: dict[str, Any]) -> dict[str, Any]:
    """A row as an item: None values are left out (DynamoDB has no empty attribute)."""
    return {k: encode(v) for k, v in values.items() if v is not None}


def row(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: decode(v) for k, v in attributes.items()}


def values_of(attributes: dict[str, Any]) -> dict[str, Any]:
    out = row(attributes)
    for key in _FLOATS & out.keys():
        out[key] = float(out[key])
    return out


class DynamoTables:
    """The tables of one prefix over a boto3 client: the query helpers, and the parts
    of the catalog that are plain key-value (embedding cache, workers, locks)."""

    _client: Any
    tables: dict[str, str]
    clock: Callable[[], float]

    def now(self) -> float:
        return float(self.clock())

    def _query(
        self, table: str, index: str | None, key: str, value: Any, **kw: Any
    ) -> Iterator[dict[str, Any]]:
        args: dict[str, Any] = {
            "TableName": self.tables[table],
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": key, **kw.pop("names", {})},
            "ExpressionAttributeValues": {":k": encode(value), **kw.pop("values", {})},
            **kw,
        }
        if index:
            args["IndexName"] = index
        limit = kw.get("Limit")
        seen = 0
        while True:
            page = self._client.query(**args)
            for found in page.get("Items", []):
                yield values_of(found)
                seen += 1
            if "LastEvaluatedKey" not in page or (limit and seen >= limit):
                return
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _count(self, table: str, index: str, key: str, value: Any) -> int:
        args: dict[str, Any] = {
            "TableName": self.tables[table],
            "IndexName": index,
            "Select": "COUNT",
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": key},
            "ExpressionAttributeValues": {":k": encode(value)},
        }
        total = 0
        while True:
            page = self._client.query(**args)
            total += int(page["Count"])
            if "LastEvaluatedKey" not in page:
                return total
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        for page in self._client.get_paginator("scan").paginate(TableName=self.tables[table]):
            for found in page.get("Items", []):
                yield values_of(found)

    def _next_id(self, counter: str) -> int:
        answer = self._client.update_item(
            TableName=self.tables["meta"],
            Key={"key": {"S": f"counter#{counter}"}},
            UpdateExpression="ADD #n :one",
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["n"]["N"])

    def _set(self, table: str, key: dict[str, Any], fields: dict[str, Any], **kw: Any) -> None:
        """``SET`` the non-None fields and ``REMOVE`` the None ones of an item."""
        names, values, sets, removes = {}, {}, [], []
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            elif isinstance(value, tuple):  # ("if_not_exists", value)
                values[f":v{i}"] = encode(value[1])
                sets.append(f"#f{i} = if_not_exists(#f{i}, :v{i})")
            else:
                values[f":v{i}"] = encode(value)
                sets.append(f"#f{i} = :v{i}")
        expression = ("SET " + ", ".join(sets) if sets else "") + (
            " REMOVE " + ", ".join(removes) if removes else ""
        )
        args: dict[str, Any] = {
            "TableName": self.tables[table],
            "Key": key,
            "UpdateExpression": expression.strip(),
            "ExpressionAttributeNames": {**names, **kw.pop("names", {})},
        }
        values.update(kw.pop("values", {}))
        if values:
            args["ExpressionAttributeValues"] = values
        self._client.update_item(**args, **kw)

    def _failed_condition(self, exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        return (
            isinstance(exc, ClientError)
            and exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
        )

    # -- documents -------------------------------------------------------

    # -- embedding cache -------------------------------------------------

    def _cache_lookup(
        self, model_id: str, hashes: Sequence[str], projection: str
    ) -> dict[str, Any]:
        table, found = self.tables["cache"], {}
        unique = sorted(set(hashes))
        for i in range(0, len(unique), 100):
            request: dict[str, Any] = {
                table: {
                    "Keys": [
                        {"model": {"S": model_id}, "hash": {"S": h}} for h in unique[i : i + 100]
                    ],
                    "ProjectionExpression": projection,
                    "ExpressionAttributeNames": {"#h": "hash"},
                }
            }
            while request:
                answer = self._client.batch_get_item(RequestItems=request)
                for r in answer["Responses"].get(table, []):
                    found[r["hash"]["S"]] = bytes(r["vector"]["B"]) if "vector" in r else True
                request = answer.get("UnprocessedKeys") or {}
        return found

    def cache_get(self, model_id: str, hashes: Sequence[str]) -> dict[str, bytes]:
        return dict(self._cache_lookup(model_id, hashes, "#h, vector"))

    def cache_put(self, model_id: str, items: Sequence[tuple[str, bytes]]) -> None:
        unique = dict(items)
        known = self._cache_lookup(model_id, list(unique), "#h")  # entries there are kept
        table = self.tables["cache"]
        puts = [
            {"PutRequest": {"Item": item({"model": model_id, "hash": h, "vector": v})}}
            for h, v in sorted(unique.items())
            if h not in known
        ]
        for i in range(0, len(puts), 25):
            request: dict[str, Any] = {table: puts[i : i + 25]}
            while request:
                request = (
                    self._client.batch_write_item(RequestItems=request).get("UnprocessedItems")
                    or {}
                )

    # -- workers ---------------------------------------------------------

    def worker_beat(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        concurrency: int,
        state: str = "running",
        in_flight: int = 0,
        jobs_done: int = 0,
        jobs_failed: int = 0,
    ) -> None:
        now = self.now()
        self._set(
            "workers",
            {"id": {"S": worker_id}},
            {
                "host": ("if_not_exists", host),
                "pid": ("if_not_exists", pid),
                "concurrency": ("if_not_exists", concurrency),
                "started_at": ("if_not_exists", now),
                "state": state,
                "in_flight": in_flight,
                "jobs_done": jobs_done,
                "jobs_failed": jobs_failed,
                "heartbeat_at": now,
            },
        )

    def workers(self, *, stale_after: float, keep: float = 3600.0) -> list[dict[str, Any]]:
        now = self.now()
        rows = sorted(
            (w for w in self._scan("workers") if w["heartbeat_at"] > now - keep),
            key=lambda w: w["started_at"],
        )
        for w in rows:
            w["heartbeat_age"] = round(now - w["heartbeat_at"], 1)
            w["stale"] = w["state"] == "running" and now - w["heartbeat_at"] > stale_after
        return rows

    # -- locks -----------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        now = self.now()
        try:
            self._client.put_item(
                TableName=self.tables["locks"],
                Item=item({"name": name, "owner": owner, "leased_until": now + ttl}),
                ConditionExpression="attribute_not_exists(#n) OR #o = :o OR #l <= :now",
                ExpressionAttributeNames={"#n": "name", "#o": "owner", "#l": "leased_until"},
                ExpressionAttributeValues={":o": encode(owner), ":now": encode(now)},
            )
        except Exception as exc:
            if self._failed_condition(exc):
                return False
            raise
        return True

    def release_lock(self, name: str, owner: str) -> None:
        try:
            self._client.delete_item(
                TableName=self.tables["locks"],
                Key={"name": {"S": name}},
                ConditionExpression="#o = :o",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":o": encode(owner)},
            )
        except Exception as exc:
            if not self._failed_condition(exc):
                raise
