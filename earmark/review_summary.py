"""`earmark review --summarize R`: what the verdicts say about the corpus. Reads
R/verdicts.csv (what review.html saves), else R/review.csv (verdicts filled in by hand),
with R/review.json (the thresholds and the run's size); writes R/review_summary.json
(`model/review_stats.py`) and prints one line per label."""
import json
import os

from earmark.model import annotations, review_stats
from earmark.model.errors import UserError

SUMMARY_FILE = "review_summary.json"


def verdicts_path(path: str, flag: str = "--summarize") -> str:
    """The verdict table to read: `path` itself when a file, else the folder's
    verdicts.csv, else its review.csv (`flag`: the option that named `path`, for errors)."""
    from earmark.review import REVIEW_CSV, VERDICTS_CSV
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise UserError(f"{flag} {path}: no such folder; give the --output of "
                        "'earmark review'")
    for name in (VERDICTS_CSV, REVIEW_CSV):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise UserError(f"{flag} {path}: neither {VERDICTS_CSV} nor {REVIEW_CSV} there; save "
                    f"the verdicts from review.html into it as {VERDICTS_CSV}")


def summary_of(path: str, flag: str = "--summarize") -> tuple:
    """→ (the summary of a review folder's verdicts, `review_stats.summarize` plus the table
    read and its unreadable rows; the table's path). Nothing is written."""
    from earmark.review import REVIEW_JSON
    table = verdicts_path(path, flag)
    folder = os.path.dirname(os.path.abspath(table))
    with open(table, encoding="utf-8-sig", newline="") as f:
        rows, bad = annotations.parse_verdicts(f.read(), table)
    if bad and bad[0].line == 0:
        raise UserError(f"{flag} {path}: {table}: {bad[0].detail}")
    facts = {}
    if os.path.isfile(os.path.join(folder, REVIEW_JSON)):
        with open(os.path.join(folder, REVIEW_JSON), encoding="utf-8") as f:
            facts = json.load(f)
    summary = review_stats.summarize(rows, facts.get("thresholds", {}),
                                     facts.get("reviewed_labels", ()), facts.get("windows"),
                                     facts.get("audio_hours"))
    return {"verdicts": os.path.basename(table), "unreadable_rows": len(bad), **summary}, table


def main(path: str) -> dict:
    summary, table = summary_of(path)
    _write(os.path.dirname(os.path.abspath(table)), summary)
    print("\n".join(summary_lines(summary, table)))
    return summary


def _write(folder: str, summary: dict) -> None:
    """review_summary.json, named in the folder's output manifest when review wrote it."""
    from earmark.pipelines import outputs
    outputs.atomic_write(os.path.join(folder, SUMMARY_FILE),
                         (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode())
    manifest = outputs.read_manifest(folder)
    if manifest and manifest.get("command") == "review" and manifest.get("complete"):
        outputs.finish(folder, "review", manifest["run_id"], [SUMMARY_FILE], previous=manifest)


def interval(p: dict) -> str:
    """0.60 (0.23-0.88): an estimate and its 95 % interval; "-" without one."""
    if p["estimate"] is None:
        return "-"
    return f"{p['estimate']:.2f} ({p['low']:.2f}-{p['high']:.2f})"


def summary_lines(summary: dict, table: str) -> list:
    """The printed table: per label, precision and prevalence with 95 % intervals."""
    lines = [f"review: {summary['reviewed']} of {summary['items']} items reviewed in {table}"
             + (f" ({summary['unreadable_rows']} rows unreadable)" if summary["unreadable_rows"]
                else ""),
             f"{'label':<20} {'precision (95% CI)':<20} {'detections':>10}   "
             f"{'prevalence (95% CI)':<20} {'random windows':>14}"]
    for label, found in summary["labels"].items():
        p, q = found["precision"], found["prevalence"]
        lines.append(f"{label:<20} {interval(p):<20} {p['n']:>10}   {interval(q):<20} "
                     f"{q['n']:>14}")
    if summary.get("unclear_verdicts"):
        lines.append(f"{summary['unclear_verdicts']} verdicts are neither yes, no nor a label "
                     "(counted as not reviewed); write yes, no or a label's name in them")
    if not summary["random_reviewed"]:
        lines.append("no reviewed random items: prevalence needs --strategy random or mixed")
    return lines
