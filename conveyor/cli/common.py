"""What every ``conveyor`` command shares: the group, options, errors, formatting."""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from ..documents import State
from ..exceptions import ConveyorError, safe_summary
from ..settings import Settings, env_var

F = TypeVar("F", bound=Callable[..., Any])
FINISHED_ORDER = (State.DONE, State.SKIPPED, State.FAILED)
WORDS = {state: state.value for state in State} | {State.SKIPPED: "unchanged"}
"""States as people read them: a skipped document is unchanged, and still searchable."""


def _settings(home: Path | None) -> Settings:
    try:
        return Settings().with_home(home)
    except Exception as exc:  # pydantic's ValidationError: a bad environment variable
        raise click.UsageError(f"invalid setting: {safe_summary(exc, 600)}") from None


def home_option(func: F) -> F:
    """``--home DIR`` on every command."""
    return click.option(
        "--home",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help=f"Where conveyor keeps its data [env: {env_var('home')}; default ./conveyor-data].",
    )(func)


def concurrency_option(func: F) -> F:
    """``--concurrency/-j N``: jobs in flight in this process."""
    return click.option(
        "--concurrency",
        "-j",
        type=click.IntRange(1),
        default=None,
        help=f"Jobs in flight in this process [env: {env_var('concurrency')}; default 2].",
    )(func)


def handle_errors(func: F) -> F:
    """A ConveyorError ends the command with its one-line message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .._sqlite import OperationalError

        try:
            return func(*args, **kwargs)
        except ConveyorError as exc:
            click.echo(f"error: {safe_summary(exc, 1000)}", err=True)
            sys.exit(2)
        except OperationalError as exc:
            click.echo(
                f"error: database busy or unreadable ({safe_summary(exc)}); another "
                "process may hold it for a long write, try again",
                err=True,
            )
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _open(home: Path | None, *, must_exist: bool = True) -> Any:
    """The Conveyor of ``home``; reading commands refuse a home that does not exist
    rather than create an empty one where a path was mistyped."""
    from ..app import Conveyor

    settings = _settings(home)
    in_home = not (settings.queue_url and settings.catalog_url and settings.vectors_url)
    if must_exist and in_home and not settings.database_path.exists():
        raise ConveyorError(
            f"no conveyor data in {settings.home} (nothing ingested there yet; "
            "check --home or CONVEYOR_HOME)"
        )
    return Conveyor(settings)


def _display_source(source: str) -> str:
    return source[len("file://") :] if source.startswith("file://") else source


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="conveyor")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Turn files into searchable embeddings, reliably.

    \b
    Examples:
      conveyor ingest ./docs                     # ingest, then wait until searchable
      conveyor search "how do I rotate the keys?" -k 5
      conveyor status                            # documents by state, queue depth
      conveyor documents --state failed          # what failed, and why
      conveyor worker --concurrency 3            # long-running; as many as you like
      conveyor serve --port 8000                 # HTTP API and live status page

    Backends by URL (CONVEYOR_QUEUE_URL, _CATALOG_URL, _BLOBS_URL, _VECTORS_URL):
    see docs/DEPLOY.md.
    """
    from ..logs import configure

    configure(max(logging.WARNING - 10 * verbose, logging.DEBUG))


def _signals() -> tuple[threading.Event, threading.Event]:
    """SIGTERM / Ctrl-C set ``stop``; a second one sets ``hurry`` too."""
    from ..runner import stop_on_signals

    return stop_on_signals(lambda message: click.echo(message, err=True))


def _plural(n: int, noun: str) -> str:
    """``1 job``, ``2 jobs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _mmss(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
        if minutes >= 60
        else f"{minutes:02d}:{secs:02d}"
    )


def _iso_times(data: Any) -> Any:
    """``data`` with every ``…_at`` field (Unix seconds) as ISO 8601 UTC, as the API
    and ``dlq list --json`` write times."""
    if isinstance(data, list):
        return [_iso_times(item) for item in data]
    if isinstance(data, dict):
        return {
            key: _iso(value)
            if key.endswith("_at") and isinstance(value, int | float)
            else _iso_times(value)
            for key, value in data.items()
        }
    return data


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
