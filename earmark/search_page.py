"""`earmark search`, the command: the search (`pipelines/search.py`), then `review.html` for
its results — review's page (`earmark/review_html.py`), one row per result, in
results.csv's order: the window with its spectrogram and audio, label the query's (its
table's label, else --label, else its name), confidence the similarity, strategy `search`.
The page saves verdicts.csv in review.csv's columns, for `earmark prepare --annotations
verdicts.csv --annotated-extent selections`.

The recordings are found as `earmark review` finds a label run's (`earmark/review_run.py`):
the embeddings folder's sources.csv, else its keys under embed.json's --input (or
--manifest folder), then under --audio-root. Only local audio is read: a result whose
recording is not found or not readable keeps its row, without a player, and one line on
stderr says so."""
import csv
import datetime
import io
import logging
import os

log = logging.getLogger("earmark.search")

REVIEW_HTML = "review.html"
STRATEGY = "search"


def main(argv=None) -> dict:
    """`earmark search`: the search, then review.html beside its results (not for a
    Dataflow template, which searches nothing yet)."""
    from earmark.pipelines import search
    from earmark.pipelines.search_flags import build_arg_parser
    stats = search.main(argv)
    if stats:
        args, _ = build_arg_parser().parse_known_args(argv)
        write_page(args.output, stats, args.audio_root)
    return stats


def write_page(output: str, stats: dict, audio_root: str = None) -> str:
    """Write OUTPUT/review.html for the search that `stats` (search.json) describes, and
    add it to the output manifest. → its path."""
    from earmark import review_html
    from earmark.model.features import FeatureConfig
    from earmark.pipelines import embeddings_io, fs, outputs
    from earmark.review_run import duration_s
    output = fs.absolute(output)
    summary = embeddings_io.read_summary(stats["embeddings"])
    items = result_items(output)
    recordings = find_recordings(stats["embeddings"], summary, items, audio_root)
    durations = {r.key: duration_s(r) for r in recordings.values()}
    _report_missing(items, recordings, durations)
    labels = list(dict.fromkeys([i.label for i in items] + list(summary.get("labels") or [])))
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    queries = len(stats["queries"])
    subtitle = (f"embeddings {stats['embeddings']} · {queries} "
                f"quer{'y' if queries == 1 else 'ies'}, top {stats['top']} · audio and "
                f"spectrograms with {review_html.CONTEXT_S:g} s either side, the window "
                f"between the marks · generated {generated}")
    html = review_html.page(f"earmark search: {len(items)} results", subtitle, items, labels,
                            lambda key: recordings[key].audio,
                            FeatureConfig.from_dict(summary["feature_config"]), durations,
                            stats["run_id"])
    path = fs.join(output, REVIEW_HTML)
    # named in the manifest (incomplete) before it is written, whole, then complete again:
    # a run killed in between leaves nothing --overwrite does not know
    outputs.begin(output, "search", stats["run_id"], [REVIEW_HTML],
                  previous=outputs.read_manifest(output))
    outputs.atomic_write(path, html.encode("utf-8"))
    outputs.finish(output, "search", stats["run_id"], [REVIEW_HTML])
    print(f"search: {len(items)} results to verify → {path}")
    return path


def result_items(output: str) -> list:
    """results.csv's rows as review items (`model.review.Item`), labelled by queries.csv:
    a query's label, else its name. A query's rows start at rank 1, in queries.csv's order."""
    from earmark.model.review import Item
    from earmark.pipelines.search import QUERIES_CSV, RESULTS_CSV
    queries, results = _read_csv(output, QUERIES_CSV), _read_csv(output, RESULTS_CSV)
    items, at = [], -1
    for row in results:
        if row["rank"] == "1":   # the next query of that name
            at = next(j for j in range(at + 1, len(queries))
                      if queries[j]["query"] == row["query"])
        label = queries[at]["label"] or queries[at]["query"]
        items.append(Item(row["file"], float(row["start_s"]), float(row["end_s"]), label,
                          float(row["similarity"]), STRATEGY))
    return items


def _read_csv(output: str, name: str) -> list:
    from earmark.pipelines import fs
    text = fs.read_bytes(fs.join(output, name)).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def find_recordings(emb_dir: str, summary: dict, items: list, audio_root: str = None) -> dict:
    """{key: `review_run.Recording`} of the recordings `items` name (`audio` None where
    not found), found as `earmark review` finds a label run's, with `audio_root` (a local
    folder) tried last."""
    from earmark import report_runs, review_run
    roots = report_runs.audio_roots(emb_dir, summary, report_runs.read_dead_letter(emb_dir))
    if audio_root and "://" not in audio_root and os.path.isdir(audio_root):
        roots.append(os.path.abspath(audio_root))
    keys = sorted({i.file for i in items})
    run = {"summary": summary, "segments": items, "recordings": keys, "audio_roots": roots}
    found = {r.key: r for r in review_run.recordings_of(emb_dir, run, None)}
    return {k: found.get(k) or review_run.Recording(k, k, None) for k in keys}


def _report_missing(items: list, recordings: dict, durations: dict) -> None:
    """One line on stderr for the results whose audio is not found, or not readable."""
    absent = [k for k, r in recordings.items() if r.audio is None]
    unreadable = [k for k, r in recordings.items() if r.audio and durations[k] is None]
    if not absent and not unreadable:
        return
    bad = set(absent) | set(unreadable)
    fix = ("; pass --audio-root with a local copy of the --input folder of 'earmark embed'"
           if absent else "")
    log.warning("search: review.html: %d of %d results without audio (%d recordings not found "
                "locally, %d not readable; e.g. %s)%s", sum(i.file in bad for i in items),
                len(items), len(absent), len(unreadable), (absent or unreadable)[0], fix)
