"""The queue conformance suite (``tests/conformance/jobqueue.py``) on the backends
with a server: PostgreSQL (the session's real server, a fresh database per test)
and SQS (the session's moto server, a fresh queue with its dead-letter queue).

What SQS cannot keep, or would wait tens of seconds of real time for, is skipped
with the reason (``conformance.jobqueue.SQS``); ``test_queue_sqs.py`` checks the
same behaviour with 1-2 s timeouts and pins down what SQS does instead.
"""

from __future__ import annotations

import pytest
from conformance.jobqueue import *  # noqa: F403 (the suite's tests and fixtures)
from conformance.jobqueue import POSTGRES, SQS, QueueBackend


@pytest.fixture(params=[POSTGRES.param(), SQS.param()])
def queue_backend(request: pytest.FixtureRequest) -> QueueBackend:
    return request.param  # type: ignore[no-any-return]
