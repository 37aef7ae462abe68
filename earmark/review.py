"""`earmark review`: choose what a person should verify from a label run, and write it to
verify (review.csv, Raven tables with a Verdict column, Audacity tracks, review.html);
`--summarize` reads the verdicts back (`earmark/review_summary.py`).

The choosing is `model/review.py`'s; the run is read by `earmark/review_run.py`; the page
is `earmark/review_html.py`'s. Local folders only. Neither `earmark review --help` nor
the choosing imports TensorFlow or runs Beam (its file systems write the output manifest);
the page's spectrograms import TensorFlow, the models' own log-mel frontend.
"""
import argparse
import datetime
import json
import logging
import os
import uuid

from earmark.model.errors import UserError
from earmark.model.review import NEEDS_SCORES, STRATEGIES
from earmark.pipelines import flags

log = logging.getLogger("earmark.review")

REVIEW_CSV = "review.csv"
REVIEW_HTML = "review.html"
REVIEW_JSON = "review.json"     # what was chosen from, and how: --summarize reads it
VERDICTS_CSV = "verdicts.csv"   # what review.html saves, moved here by the reviewer
RAVEN_DIR, RAVEN_SUFFIX = "raven", ".selections.txt"
AUDACITY_DIR, AUDACITY_SUFFIX = "audacity", ".txt"


def build_arg_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(
        prog="earmark review",
        description="Choose what a person should verify from a label run: review.csv "
                    "(file,start_s,end_s,label,confidence,strategy,verdict), Raven tables "
                    "with a Verdict column, Audacity tracks and review.html (listen, answer "
                    "with keys, save verdicts.csv). Verdicts go back into training with "
                    "'earmark prepare --annotations R/verdicts.csv --annotated-extent "
                    "selections'.",
        epilog="examples:\n"
               "  earmark review --run labels/ --budget 40 --output review-1/\n"
               "  earmark review --run labels/ --budget 20 --strategy uncertain --output r/\n"
               "  earmark review --run labels/ --budget 30 --strategy random --seed 7 \\\n"
               "      --audio-root recordings/ --output r/ --overwrite\n"
               "  earmark review --summarize review-1/    # precision and prevalence\n"
               "strategies: uncertain (scores nearest each label's threshold), top (highest-\n"
               "confidence segments), random (uniform over windows), mixed (default: 1/4 random,\n"
               "1/4 top, 1/2 uncertain). random and mixed need 'earmark label --scores'.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="LABEL_OUTPUT_DIR", help="the --output of 'earmark label'")
    p.add_argument("--budget", type=flags.positive_int("--budget", 40), metavar="N",
                   help="how many items to verify")
    p.add_argument("--strategy", choices=STRATEGIES, default="mixed",
                   help="how to choose them (default mixed)")
    p.add_argument("--seed", type=flags.non_negative_int("--seed", 7), default=0,
                   help="the random draw's seed (default 0): the same seed, the same items")
    p.add_argument("--output", metavar="REVIEW_DIR", help="folder to write (empty, or "
                   "--overwrite)")
    flags.add_overwrite(p)
    p.add_argument("--exclude", action="append", default=[], metavar="REVIEW_DIR_OR_CSV",
                   help="an earlier round's review folder (its verdicts.csv, else review.csv) "
                        "or verdict table: no item overlapping one of its items is asked "
                        "again (repeatable)")
    p.add_argument("--model", metavar="MODEL_DIR",
                   help="the model that labeled the run (default: the one run.json names): "
                        "its window and log-mel settings")
    p.add_argument("--audio-root", metavar="DIR",
                   help="folder the run's file keys are relative to (the --input of 'earmark "
                        "label'), when the recordings are no longer where sources.csv says")
    p.add_argument("--summarize", metavar="REVIEW_DIR",
                   help="instead: read REVIEW_DIR/verdicts.csv (else review.csv) and write "
                        "review_summary.json: each label's precision and prevalence")
    return p


def main(argv=None):
    args = build_arg_parser().parse_args(argv)
    if args.summarize:
        from earmark import review_summary
        return review_summary.main(args.summarize)
    _check_args(args)
    return write_review(args)


def _check_args(args) -> None:
    missing = [f for f, v in (("--run", args.run), ("--budget", args.budget),
                              ("--output", args.output)) if v is None]
    if missing:
        raise UserError(f"earmark review needs {', '.join(missing)} (or --summarize "
                        "REVIEW_DIR); see 'earmark review --help'")
    for flag, value in (("--run", args.run), ("--output", args.output),
                        ("--model", args.model), ("--audio-root", args.audio_root)):
        if value and "://" in value:
            raise UserError(f"{flag} {value}: earmark review reads and writes local paths "
                            "only; copy the folder here first (e.g. gsutil -m cp -r)")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UserError(f"--output {args.output} is a file; give a folder")
    run, out = os.path.abspath(args.run), os.path.abspath(args.output)
    if out == run or run.startswith(out + os.sep):
        raise UserError(f"--output {args.output} holds the run it reviews; choose another "
                        f"folder (e.g. {args.run.rstrip('/')}/review)")


def write_review(args) -> dict:
    """Choose the items and write the review folder → review.json's content."""
    from earmark.model.review import Pool
    from earmark.pipelines import outputs
    from earmark.review_run import duration_s, read_label_run
    run = read_label_run(args.run, args.model, args.audio_root)
    if args.strategy in NEEDS_SCORES and not run.has_scores:
        raise UserError(f"--strategy {args.strategy} needs per-window scores, and --run "
                        f"{args.run} has no scores/; label with --scores, or choose "
                        "--strategy top or uncertain")
    for note in run.notes:
        log.warning("review: %s", note)
    pool = Pool(run.rules, run.window_s, args.budget, args.seed)
    pool.add_segments(run.segments)
    durations = {}
    for recording in run.recordings:
        durations[recording.key] = duration_s(recording)
        if run.has_scores:
            found = run.scores(recording)
            if found is not None:
                pool.add_scores(recording.key, found[0], found[1], durations[recording.key])
    if not run.has_scores:
        log.info("review: no scores/ in the run: uncertain items are the segments whose "
                 "confidence lies nearest the threshold (label with --scores for windows)")
    reviewed = _reviewed_spans(args.exclude)
    items = pool.choose(args.strategy, reviewed=reviewed)
    if not items:
        raise UserError(f"--run {args.run}: nothing to review (no segments, no window "
                        "scores); label more recordings, or label with --scores")
    output = args.output
    os.makedirs(output, exist_ok=True)
    outputs.claim(output, "review", args.overwrite)
    if os.path.exists(os.path.join(output, VERDICTS_CSV)):
        log.warning("review: %s stays (earmark did not write it), but it answers the earlier "
                    "review's items, not these", os.path.join(output, VERDICTS_CSV))
    run_id = uuid.uuid4().hex
    facts = _facts(args, run, items, pool, run_id)
    if args.exclude:
        facts["excluded"] = {"tables": [os.path.abspath(p) for p in args.exclude],
                             "items": len(reviewed)}
    files = {**_files(items, run), REVIEW_JSON: json.dumps(facts, indent=1, sort_keys=True) + "\n"}
    outputs.begin(output, "review", run_id, list(files) + [REVIEW_HTML])
    for rel, text in files.items():
        _write(output, rel, text)
    _write(output, REVIEW_HTML, _page(run, items, durations, facts))
    outputs.finish(output, "review", run_id, list(files) + [REVIEW_HTML])
    counts = ", ".join(f"{n} {s}" for s, n in facts["by_strategy"].items())
    print(f"review: {len(items)} items ({counts}) from {len(run.recordings)} recordings → "
          f"{os.path.join(os.path.abspath(output), REVIEW_HTML)}")
    return facts


def _reviewed_spans(paths: list) -> list:
    """(file, start_s, end_s) of every item of the --exclude tables (a review folder: its
    verdicts.csv, else its review.csv); a table that cannot be read is a UserError."""
    from earmark.model.annotations import parse_verdicts
    spans = []
    for path in paths:
        table = path
        if os.path.isdir(path):
            table = next((os.path.join(path, n) for n in (VERDICTS_CSV, REVIEW_CSV)
                          if os.path.isfile(os.path.join(path, n))), None)
            if table is None:
                raise UserError(f"--exclude {path}: no {VERDICTS_CSV} or {REVIEW_CSV} there; "
                                "give an earlier 'earmark review' --output or its table")
        try:
            with open(table, encoding="utf-8-sig", newline="") as f:
                rows, bad = parse_verdicts(f.read(), table)
        except OSError as e:
            raise UserError(f"--exclude {path}: cannot read it ({e.strerror}); give an "
                            "earlier review folder or its verdicts.csv") from None
        if bad and not rows:
            raise UserError(f"--exclude {path}: {bad[0].detail}; give an earlier review "
                            "folder or its verdicts.csv")
        spans += [(r.file, min(r.start_s, r.end_s), max(r.start_s, r.end_s)) for r in rows
                  if r.file is not None]
    return spans


def _files(items, run) -> dict:
    """{path relative to the output: text} of review.csv and the per-recording tables."""
    from earmark.model.annotations import verdict_raven_table, verdict_table
    from earmark.model.segments import Segment
    from earmark.pipelines import outputs
    from earmark.pipelines.label_formats import audacity_labels
    names = {r.key: r.name for r in run.recordings}
    files = {REVIEW_CSV: verdict_table(items)}
    by_file = {}
    for item in items:
        by_file.setdefault(item.file, []).append(item)
    for key, found in sorted(by_file.items()):
        name = names.get(key) or outputs.recording_name(key, key)
        files[f"{RAVEN_DIR}/{name}{RAVEN_SUFFIX}"] = verdict_raven_table(
            found, run.config.mel_min_hz, run.config.mel_max_hz)
        files[f"{AUDACITY_DIR}/{name}{AUDACITY_SUFFIX}"] = audacity_labels(
            [Segment(i.start_s, i.end_s, f"{i.label} ({i.strategy} {i.confidence:.2f})", 0.0)
             for i in found])
    return files


def _facts(args, run, items, pool, run_id) -> dict:
    """review.json: where the items came from and how they were chosen."""
    by_strategy = {}
    for item in items:
        by_strategy[item.strategy] = by_strategy.get(item.strategy, 0) + 1
    return {"run": os.path.abspath(args.run), "run_id": run_id,
            "model_id": run.summary.get("model_id"), "strategy": args.strategy,
            "budget": args.budget, "seed": args.seed, "items": len(items),
            "by_strategy": dict(sorted(by_strategy.items())),
            "labels": run.labels, "reviewed_labels": list(run.rules),
            "thresholds": {l: r.threshold for l, r in run.rules.items()},
            "smoothing_windows": {l: r.smoothing_windows for l, r in run.rules.items()},
            "window_s": run.window_s, "hop_s": run.summary.get("hop_s"),
            "scores": run.has_scores, "windows": pool.windows_seen if run.has_scores else None,
            "recordings": len(run.recordings), "audio_hours": run.summary.get("audio_hours")}


def _page(run, items, durations, facts) -> str:
    from earmark import review_html
    audio = {r.key: r.audio for r in run.recordings}
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    counts = ", ".join(f"{n} {s}" for s, n in facts["by_strategy"].items())
    subtitle = (f"run {facts['run']} · {counts} · audio and spectrograms with "
                f"{review_html.CONTEXT_S:g} s either side, the item between the marks · "
                f"generated {generated}")
    return review_html.page(f"earmark review: {len(items)} items", subtitle, items, run.labels,
                            audio.get, run.config, durations, facts["run_id"])


def _write(output: str, rel: str, text: str) -> None:
    from earmark.pipelines import outputs
    path = os.path.join(output, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    outputs.atomic_write(path, text.encode("utf-8"))
