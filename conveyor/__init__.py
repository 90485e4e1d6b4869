"""conveyor: turn files into searchable embeddings, reliably.

>>> import conveyor
>>> with conveyor.open("conveyor-data") as cv:       # doctest: +SKIP
...     cv.ingest(["docs/"])
...     hits = cv.search("how do I rotate the keys?", k=5)
"""

from .app import Conveyor, IngestSummary, open_home
from .exceptions import ConveyorError, PermanentError, TransientError
from .settings import Settings

__version__ = "0.1.0"

open = open_home

__all__ = [
    "Conveyor",
    "ConveyorError",
    "IngestSummary",
    "PermanentError",
    "Settings",
    "TransientError",
    "__version__",
    "open",
]
