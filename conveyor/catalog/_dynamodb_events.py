"""The DynamoDB catalog's document histories (:mod:`conveyor.catalog.events`).

A move is one ``TransactWriteItems``: the document's update and the event's
``PutItem`` commit together or not at all. The document item counts its events
(``event_seq``); the update is conditional on the count read before it, so two
hosts moving one document at once cannot both write an event from the same
state: the loser reads the document again and retries. An event's sort key is
that count, zero-padded, so a document's history reads back in order with one
``Query``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._dynamodb import DynamoTables, encode, item, values_of
from .events import EVENT_COLUMNS, event_row

ATTEMPTS = 20
"""How often a move is tried again when another host moved the document between
its read and its write."""


class DynamoEvents(DynamoTables):
    """Moves with their events, and reading a history back."""

    def _event_move(
        self,
        document_id: str,
        changes: dict[str, Any],
        reason: str | None,
        *,
        create: bool,
    ) -> None:
        """Apply ``changes`` (attributes to set, ``state`` among them) to the
        document and record the event, atomically; ``create``: a missing document is
        created (an ``enqueued``), else left alone."""
        from botocore.exceptions import ClientError

        for _ in range(ATTEMPTS):
            found = self._client.get_item(
                TableName=self.tables["documents"],
                Key={"id": {"S": document_id}},
                ConsistentRead=True,
            ).get("Item")
            before = values_of(found) if found else None
            if before is None and not create:
                return
            seq = int((before or {}).get("event_seq") or 0)
            event = event_row(document_id, before, changes, reason)
            event.update(at=self.now(), seq=f"{seq + 1:012d}")
            if seq:
                condition = "#es = :seq"
                values = {":seq": encode(seq)}
            else:
                condition = "attribute_not_exists(#es)"
                values = {}
            if not create:
                condition = f"attribute_exists(#id) AND {condition}"
            update = self._update_args(
                "documents",
                {"id": {"S": document_id}},
                {**changes, "event_seq": seq + 1},
                ConditionExpression=condition,
                names={"#es": "event_seq", **({} if create else {"#id": "id"})},
                values=values,
            )
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {"Update": update},
                        {
                            "Put": {
                                "TableName": self.tables["events"],
                                "Item": item(event),
                                "ConditionExpression": "attribute_not_exists(#seq)",
                                "ExpressionAttributeNames": {"#seq": "seq"},
                            }
                        },
                    ]
                )
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons") or []
                if not any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                    raise
        raise RuntimeError(f"document {document_id} kept changing under a move")

    def _json_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        out = dict(fields)
        out.pop("updated_at", None)
        for key in ("metadata", "timings"):
            if key in out:
                out[key] = json.dumps(out[key], ensure_ascii=False, default=str)
        out["updated_at"] = self.now()
        return out

    def move(self, document_id: str, reason: str | None = None, **fields: Any) -> None:
        """See :meth:`conveyor.catalog.Catalog.move`."""
        changes = self._json_fields(fields)
        self._event_move(document_id, changes, reason, create=False)

    def move_many(self, moves: Sequence[tuple[str, str | None, dict[str, Any]]]) -> None:
        """See :meth:`conveyor.catalog.Catalog.move_many`: one move after another here."""
        for document_id, reason, fields in moves:
            self.move(document_id, reason, **fields)

    def events(self, document_id: str) -> list[dict[str, Any]]:
        """See :meth:`conveyor.catalog.Catalog.events`."""
        found = self._query("events", None, "document_id", document_id)
        out = []
        for n, event in enumerate(found):
            row: dict[str, Any] = {"id": n + 1}
            row.update({column: event.get(column) for column in EVENT_COLUMNS})
            row["at"] = float(row["at"])
            out.append(row)
        return out

    def _forget_events(self, document_id: str) -> None:
        """A deleted document's history goes with it."""
        keys = [
            {"document_id": {"S": document_id}, "seq": {"S": e["seq"]}}
            for e in self._query("events", None, "document_id", document_id)
        ]
        for i in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": k}} for k in keys[i : i + 25]]
            pending: dict[str, Any] = {self.tables["events"]: requests}
            while pending:
                answer = self._client.batch_write_item(RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}
