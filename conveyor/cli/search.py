"""``conveyor search`` (hybrid, dense or lexical, with filters) and ``conveyor eval``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import recordings
from ..filters import BadFilter, Filter, parse_range, parse_where, source_prefix
from ..search import MODES, Results
from ..settings import env_var
from ..vectorstore import Hit
from .common import _display_source, _mmss, _open, handle_errors, home_option, main

F = TypeVar("F", bound=Callable[..., Any])


def filter_options(func: F) -> F:
    """``--source``, ``--kind``, ``--pages``, ``--time``, ``--where``."""
    for option in reversed(
        [
            click.option(
                "--source",
                "source",
                default=None,
                metavar="PREFIX",
                help="Only sources under this folder or URI prefix (whole path segments): "
                "./docs/reports, s3://bucket/2024/.",
            ),
            click.option("--kind", default=None, help="Only documents of this kind (pdf, text…)."),
            click.option(
                "--pages",
                default=None,
                metavar="A-B",
                help="Only chunks on these pages: 3, 2-5, 4-.",
            ),
            click.option(
                "--time",
                "seconds",
                default=None,
                metavar="A-B",
                help="Only parts of recordings overlapping this span: 90-120, 1:30-2:45.",
            ),
            click.option(
                "--where",
                multiple=True,
                metavar="KEY=VALUE",
                help="Only chunks whose metadata KEY is VALUE (repeat for several); a PDF's "
                "described type and language too: type=invoice, language=de; a recorder's "
                "device_id=esp32-test.",
            ),
            click.option(
                "--since",
                default=None,
                metavar="TIME",
                help="Only recordings that started at or after TIME (ISO 8601; no zone: UTC), "
                "as their recorder said (POST /ingest startedAt).",
            ),
            click.option(
                "--until",
                default=None,
                metavar="TIME",
                help="Only recordings that started at or before TIME (ISO 8601; no zone: UTC).",
            ),
        ]
    ):
        func = option(func)
    return func


def make_filter(
    source: str | None,
    kind: str | None,
    pages: str | None,
    seconds: str | None,
    where: tuple[str, ...],
    since: str | None = None,
    until: str | None = None,
) -> Filter | None:
    try:
        low, high = recordings.bound(since, "--since"), recordings.bound(until, "--until")
        found = Filter(
            source_prefix=source_prefix(source) if source else None,
            kind=kind,
            pages=parse_range(pages, "page") if pages else None,
            seconds=parse_range(seconds, "time") if seconds else None,
            where=parse_where(where),
            recorded=(low, high) if since or until else None,
        )
    except (BadFilter, recordings.BadRecording) as exc:
        raise click.UsageError(str(exc)) from None
    return found or None


def _notes(results: Results) -> None:
    for note in results.notes:
        click.echo(f"note: {note}", err=True)


def mode_option(func: F) -> F:
    return click.option(
        "--mode",
        type=click.Choice(MODES),
        default=None,
        help="hybrid (meaning + exact words, fused), dense (meaning) or lexical (BM25) "
        f"[env: {env_var('search_mode')}; default hybrid].",
    )(func)


@main.command()
@click.argument("query", required=False)
@click.option(
    "-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Number of hits."
)
@click.option("--collection", "-c", default=None, help="Collection to search [default 'default'].")
@mode_option
@filter_options
@click.option(
    "--batch",
    "batch",
    type=click.File("r"),
    default=None,
    help="Read one query a line from FILE ('-' for stdin); print one JSON line each.",
)
@click.option("--json", "as_json", is_flag=True, help="Print hits as a JSON array.")
@home_option
@handle_errors
def search(
    query: str | None,
    k: int,
    collection: str | None,
    mode: Any,
    source: str | None,
    kind: str | None,
    pages: str | None,
    seconds: str | None,
    where: tuple[str, ...],
    since: str | None,
    until: str | None,
    batch: Any,
    as_json: bool,
    home: Path | None,
) -> None:
    """Find the chunks that best answer QUERY: by meaning and by its exact words.

    Each hit shows its score (hybrid: the fused reciprocal-rank score; dense:
    cosine similarity; lexical: BM25; higher is better), its source with the
    page or time range, and which chunk of the document it is. Every search
    loads the model first; for many searches, use --batch, or run `conveyor
    embed-server` once and set EMBEDDING_SERVICE_URL.

    \b
    Examples:
      conveyor search "how do I rotate the keys?" -k 5
      conveyor search "error E-4412" --mode lexical
      conveyor search "wiring diagram" --collection manuals_pages    # whole PDF pages
      conveyor search "refund policy" --source ./docs/policies --kind pdf --pages 1-3
      conveyor search "budget" --where team=finance --where year=2024 --json | jq '.[0].source'
      conveyor search "invoice" --where device_id=esp32-test --since 2025-12-10T00:00:00Z
      printf 'first question\\nsecond question\\n' | conveyor search --batch - -k 3
    """
    if query is None and batch is None:
        raise click.UsageError("give a QUERY, or --batch FILE for one query a line")
    if query is not None and batch is not None:
        raise click.UsageError("give a QUERY or --batch FILE, not both")
    if query is not None and not query.strip():
        raise click.UsageError("QUERY is empty: say what to look for")
    found = make_filter(source, kind, pages, seconds, where, since, until)
    with _open(home) as cv:
        if batch is not None:
            queries = [line.strip() for line in batch if line.strip()]
            for q, results in zip(
                queries,
                cv.search_results(queries, k, collection=collection, mode=mode, where=found),
                strict=True,
            ):
                line = {
                    "query": q,
                    "mode": results.mode,
                    "hits": [h.as_dict() for h in results.hits],
                    "notes": results.notes,
                }
                click.echo(json.dumps(line, ensure_ascii=False))
            return
        [results] = cv.search_results([query], k, collection=collection, mode=mode, where=found)
    _notes(results)
    hits = results.hits
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo("no hits")
    for rank, hit in enumerate(hits, 1):
        place = _display_source(hit.source)
        if hit.page is not None:
            place += f" (page {hit.page})"
        if hit.metadata.get("start_s") is not None:
            span = f"{_mmss(hit.metadata['start_s'])}–{_mmss(hit.metadata['end_s'])}"
            wall = recordings.wall_clock(hit.metadata)  # a recorder said when it started
            place += f" ({span} · {wall})" if wall else f" ({span})"
        if hit.metadata.get("speakers"):
            place += "  " + ", ".join(hit.metadata["speakers"])
        click.secho(f"{rank}. {hit.score:.3f}  {place}  chunk {hit.chunk_index + 1}", bold=True)
        text = " ".join(hit.text.split())
        click.echo("   " + (text[:300] + "…" if len(text) > 300 else text))
        if hit.metadata.get("page_image"):  # CONVEYOR_PAGE_IMAGES: the page, in the blob store
            click.echo(f"   page image: {hit.metadata['page_image']}")


@main.command("eval")
@click.option(
    "--queries",
    "queries_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="Queries: one a line (ids 1, 2, …), or JSON lines {'_id': …, 'text': …}.",
)
@click.option(
    "--qrels",
    "qrels_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="Judgments: TREC qrels (query 0 document relevance) or BEIR TSV.",
)
@click.option(
    "--mode",
    "modes",
    type=click.Choice([*MODES, "all"]),
    multiple=True,
    help="Mode(s) to evaluate; repeat, or 'all' [default: the configured mode].",
)
@click.option("-k", "k", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option(
    "--id-field",
    default=None,
    help="Metadata field that holds the judged document id [default: the source's "
    "file name without its extension].",
)
@click.option("--collection", "-c", default=None, help="Collection to search [default 'default'].")
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@home_option
@handle_errors
def evaluate(
    queries_path: Path,
    qrels_path: Path,
    modes: tuple[str, ...],
    k: int,
    id_field: str | None,
    collection: str | None,
    source: str | None,
    kind: str | None,
    pages: str | None,
    seconds: str | None,
    where: tuple[str, ...],
    since: str | None,
    until: str | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Measure search on judged queries: nDCG@k, recall@k and @100, MRR@k, latency.

    A judged document id names a document by its source's file name without the
    extension (0042 is …/0042.txt), or by a metadata field (--id-field).

    \b
    Examples:
      conveyor eval --queries queries.txt --qrels qrels.trec
      conveyor eval --queries queries.jsonl --qrels test.tsv --mode all --json
      conveyor eval --queries q.txt --qrels r.trec --mode dense --id-field doc_id -k 20
    """
    from .. import evaluation

    queries = evaluation.read_queries(queries_path)
    judged = evaluation.read_qrels(qrels_path)
    found = make_filter(source, kind, pages, seconds, where, since, until)
    reports = []
    with _open(home) as cv:
        chosen = list(MODES) if "all" in modes else list(dict.fromkeys(modes))
        for mode in chosen or [cv.settings.search_mode]:

            def run(text: str, n: int, mode: Any = mode) -> list[Hit]:
                hits: list[Hit] = cv.search(text, n, collection=collection, mode=mode, where=found)
                return hits

            reports.append(
                evaluation.evaluate(run, queries, judged, mode=mode, k=k, id_field=id_field)
            )
    if as_json:
        click.echo(json.dumps({"runs": [r.as_dict() for r in reports]}, indent=2))
        return
    first = reports[0]
    click.echo(
        f"{first.queries} judged queries ({first.unjudged} without judgments skipped), k={k}"
    )
    click.echo(
        f"{'mode':<8} {'nDCG@' + str(k):>8} {'R@' + str(k):>7} {'R@100':>7} {'MRR@' + str(k):>8}"
        f" {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    for r in reports:
        lat = r.latency_ms
        click.echo(
            f"{r.mode:<8} {r.ndcg:>8.4f} {r.recall:>7.4f} {r.recall_100:>7.4f} {r.mrr:>8.4f}"
            f" {lat['p50']:>8.1f} {lat['p95']:>8.1f} {lat['p99']:>8.1f}"
        )
    sys.stdout.flush()
