"""AWS entry points: the same job path as ``conveyor worker``, driven from outside.

* :mod:`conveyor.aws.lambda_handler` — ``handler(event, context)`` for an SQS
  event source mapping with ``ReportBatchItemFailures``.
* :mod:`conveyor.aws.run_job` — one job from ``INPUT_JSON`` (Step Functions,
  ECS RunTask); ``conveyor run-job`` is its command.

Both hand the messages someone else received (Lambda's poller, Step
Functions) to the ordinary :class:`~conveyor.worker.Processor` through
:class:`~conveyor.aws.batch.BatchQueue`, an in-memory queue that records what
became of each message. There is one code path for a job; only the way the
messages arrive and leave differs.
"""
