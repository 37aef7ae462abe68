"""`earmark report`: one self-contained HTML page for a labeling run and/or a trained model.

Run (`--run`, the --output of 'earmark label'): summary from run.json, segments per label,
a timeline per recording (with per-window score traces when labeled with --scores), the
top segments with log-mel thumbnails decoded from the recordings, and the failed files.
Model (`--model`, the --model-dir of 'earmark train'): metrics, event detection (the
post-processing and calibration model.json ships, and the event scores of
event_evaluation.json when 'earmark evaluate --annotations' has written one), training and PR
curves, the confusion matrix (from evaluation.json when 'earmark evaluate' has written one).

Everything is inline (CSS, PNGs as data: URIs, SVG): the file can be mailed or archived.
Missing optional pieces become a note in the page. Reads local folders only and never
imports Beam; TensorFlow (for the thumbnails' log-mel, the models' own frontend) is
imported only when the first thumbnail is drawn.

This module is the command (flags, checks, writing the page); the rest, one job each:
report_runs (reading run and model folders), report_thumbnails (audio → log-mel PNGs),
report_run_sections and report_model_sections (the page's sections), report_html (drawing).
"""
import argparse
import datetime
import os

from earmark import report_html as h
from earmark.model.errors import UserError
from earmark.pipelines import flags
from earmark.report_model_sections import model_body
from earmark.report_runs import feature_config, read_model, read_run
from earmark.report_runs import read_scores, read_segments  # noqa: F401 (the demo's and tests' API)
from earmark.report_run_sections import run_sections


def build_arg_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(
        prog="earmark report",
        description="Write one self-contained HTML report (no external files or URLs) for a "
                    "labeling run and/or a trained model.",
        epilog="examples:\n"
               "  earmark report --run labels/                  # → labels/report.html\n"
               "  earmark report --model models/snore           # → models/snore/report.html\n"
               "  earmark report --run labels/ --model models/snore --audio-root recordings/ \\\n"
               "      --top 24 --output night-report.html\n"
               "  earmark report --model models/snore --event-evaluation eval/\n"
               "  earmark report --run labels/ --review review-1/   # + what the verdicts say\n"
               "Thumbnails need the recordings: they are found under --audio-root (the --input\n"
               "of 'earmark label'), or where run.json / dead_letter.jsonl say they were.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="LABEL_OUTPUT_DIR", help="the --output of 'earmark label'")
    p.add_argument("--model", metavar="MODEL_DIR", help="the --model-dir of 'earmark train'")
    p.add_argument("--evaluation", metavar="PATH",
                   help="evaluation.json (or its folder) of 'earmark evaluate' "
                        "(default: the one in MODEL_DIR, if any)")
    p.add_argument("--event-evaluation", metavar="PATH",
                   help="event_evaluation.json (or its folder) of 'earmark evaluate "
                        "--annotations' (default: the one in MODEL_DIR, if any)")
    p.add_argument("--review", metavar="REVIEW_DIR",
                   help="the --output of 'earmark review' with verdicts (verdicts.csv, else "
                        "review.csv): a section of precision and prevalence per label, as "
                        "'earmark review --summarize' prints them")
    p.add_argument("--audio-root", metavar="DIR",
                   help="folder the run's file keys are relative to (the --input of 'earmark "
                        "label'); default: guessed from run.json and dead_letter.jsonl")
    p.add_argument("--output", metavar="report.html",
                   help="where to write the page (default: report.html in the run dir, "
                        "else in the model dir, else in the review dir)")
    p.add_argument("--top", type=int, default=12, metavar="N",
                   help="highest-confidence segments shown with a spectrogram (default 12)")
    p.add_argument("--max-recordings", type=int, default=50, metavar="N",
                   help="recordings drawn as timelines (default 50; the page says how many "
                        "were left out)")
    return p


def main(argv=None) -> str:
    args = build_arg_parser().parse_args(argv)
    _check_args(args)
    sections, title_parts, config = [], [], None
    model = read_model(args.model, args.evaluation, args.event_evaluation) if args.model else None
    if args.run:
        run = read_run(args.run, args.audio_root)
        config, config_note = feature_config(model, run)
        sections += run_sections(run, model, config, config_note, args.top, args.max_recordings)
        title_parts.append(f"run {os.path.basename(os.path.abspath(args.run))}")
    if model:
        sections.append(("model", "Model", model_body(model)))
        title_parts.append(f"model {os.path.basename(os.path.abspath(args.model))}")
    if args.review:
        from earmark import report_review_section, review_summary
        summary, table = review_summary.summary_of(args.review, "--review")
        sections.append(("review", "Review", report_review_section.review_body(summary, table)))
        title_parts.append(f"review {os.path.basename(os.path.abspath(args.review))}")
    output = args.output or os.path.join(args.run or args.model or args.review, "report.html")
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sources = " · ".join(f"{k}: {os.path.abspath(v)}" for k, v in
                         (("run", args.run), ("model", args.model)) if v)
    page = h.page("earmark report: " + ", ".join(title_parts), f"{sources} · generated {generated}",
                  sections)
    _write(output, page)
    print(f"report: {os.path.abspath(output)}")
    return os.path.abspath(output)


def _check_args(args):
    if not args.run and not args.model and not args.review:
        raise UserError("give --run LABEL_OUTPUT_DIR, --model MODEL_DIR and/or --review "
                        "REVIEW_DIR (see 'earmark report --help')")
    for flag, value in (("--run", args.run), ("--model", args.model), ("--review", args.review),
                        ("--evaluation", args.evaluation),
                        ("--event-evaluation", args.event_evaluation),
                        ("--audio-root", args.audio_root),
                        ("--output", args.output)):
        if value and "://" in value:
            raise UserError(f"{flag} {value}: earmark report reads and writes local paths only; "
                            "copy the folder here first (e.g. gsutil -m cp -r)")
    if args.top < 0 or args.max_recordings < 0:
        raise UserError("--top and --max-recordings must be 0 or more")


def _write(path: str, text: str):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--output {path}: folder {folder} does not exist; create it or "
                        "choose another path")
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
