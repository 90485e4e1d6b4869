"""safe_summary: credentials never reach a message, a log line or the catalog."""

from __future__ import annotations

import pytest

from conveyor.exceptions import ConfigurationError, safe_summary


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://bob:hunter2@db:5432/app", "postgresql://bob:***@db:5432/app"),
        ("postgres://bob:p@ss@db/app", "postgres://bob:***@db/app"),  # "@" left unencoded
        ("postgresql://:hunter2@db/app", "postgresql://:***@db/app"),  # no user name
        ("postgresql://bob:a/b@db/app", "postgresql://bob:***@db/app"),  # "/" left unencoded
        (
            "postgresql://db/app?user=bob&password=hunter2",
            "postgresql://db/app?user=bob&password=***",
        ),
        ("postgresql://bob@db/app", "postgresql://bob@db/app"),  # nothing to hide
        ("s3://bucket/key", "s3://bucket/key"),
        ("chroma+http://localhost:8000", "chroma+http://localhost:8000"),
    ],
)
def test_urls_lose_their_passwords(text: str, expected: str) -> None:
    assert safe_summary(text) == expected


def test_errors_are_one_bounded_line_with_the_class_name() -> None:
    exc = OSError("cannot reach\npostgresql://bob:hunter2@db/app " + "x" * 500)
    summary = safe_summary(exc)
    assert summary.startswith("OSError: cannot reach postgresql://bob:***@db/app")
    assert "hunter2" not in summary and "\n" not in summary
    assert len(summary) == 300
    assert safe_summary(ConfigurationError("token=abc123 refused")) == "token=*** refused"
