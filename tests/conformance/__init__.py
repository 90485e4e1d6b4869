"""Conformance suites: one per contract, run against every backend.

Each suite module holds the contract's tests and the fixtures they use; a test
module of a tier imports them all (``from conformance.jobqueue import *``) and
defines the one fixture that names its backends (``queue_backend``,
``blob_backend``, ``embedder_backend``), parametrised, so the same tests run
on fakes and local files in ``tests/unit`` and on real servers and models in
``tests/integration``. A backend that cannot keep part of a contract lists
those tests with the reason; they are skipped saying it.
"""
