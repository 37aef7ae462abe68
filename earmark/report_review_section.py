"""The report's Review section (`earmark report --review R`): what a round of verdicts says
about the corpus, as `earmark review --summarize` prints it: per label, the precision of the
reviewed detections and, from the `random` items, how common the label is, with 95 % Wilson
intervals (`model/review_stats.py`)."""
from earmark import report_html as h
from earmark.review_summary import interval


def review_body(summary: dict, table: str) -> str:
    rows = []
    for label, found in summary["labels"].items():
        p, q = found["precision"], found["prevalence"]
        hours = q.get("hours_in_run")
        rows.append([h.esc(label), h.esc(interval(p)), str(p["n"]), h.esc(interval(q)),
                     str(q["n"]), "" if hours is None else h.esc(f"{hours:g}")])
    notes = [f"{summary['reviewed']} of {summary['items']} items reviewed in {table}"
             + (f"; {summary['unreadable_rows']} rows unreadable" if summary["unreadable_rows"]
                else "")]
    if summary.get("unclear_verdicts"):
        notes.append(f"{summary['unclear_verdicts']} verdicts are neither yes, no nor a label "
                     "(counted as not reviewed)")
    if not summary["random_reviewed"]:
        notes.append("no reviewed random items: prevalence needs review's random or mixed "
                     "strategy")
    return (h.table(["label", "precision (95% CI)", "detections reviewed",
                     "prevalence (95% CI)", "random windows reviewed", "hours in the run"],
                    rows, {2, 4, 5})
            + "".join(h.note(n) for n in notes))
