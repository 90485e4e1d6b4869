"""The ``conveyor`` command: a thin layer over :mod:`conveyor.app`.

One module per family of commands; each registers its commands on :data:`main`.
"""

from __future__ import annotations

from . import fleet, ingest, read, reindex, run, search
from .common import main

__all__ = ["fleet", "ingest", "main", "read", "reindex", "run", "search"]
