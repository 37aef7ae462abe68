"""What verdicts say about a corpus (`earmark review --summarize`): each label's precision
from the reviewed detections, and from the `random` items how common it is, with Wilson
score intervals. Pure functions on `annotations.VerdictRow`s."""
import math

from earmark.model.annotations import table_labels, verdict_label
from earmark.model.window_labels import is_negative

CONFIDENCE_LEVEL = 0.95
Z = 1.959963984540054   # the standard normal's 97.5th percentile: a two-sided 95 % interval


def wilson(k: int, n: int, z: float = Z) -> tuple:
    """(low, high) Wilson score interval of a proportion k/n; (None, None) when n is 0."""
    if n == 0:
        return None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def proportion(k: int, n: int) -> dict:
    low, high = wilson(k, n)
    return {"n": n, "k": k, "estimate": round(k / n, 4) if n else None, "low": low, "high": high}


UNCLEAR = object()   # `answer` of a verdict that cannot be read (`verdict_label` refuses it)


def answer(row, labels=()):
    """`annotations.verdict_label` of a row (`labels`: the table's, which a verdict may
    name), or UNCLEAR where it refuses the verdict."""
    try:
        return verdict_label(row.label, row.verdict, labels)
    except ValueError:
        return UNCLEAR


def truth(found):
    """The label an answer (`answer`) holds (None when it holds none of interest: `no`, or
    another label that is a negative), or False when there is none (not reviewed, or a
    verdict that cannot be read)."""
    if found is None or found is UNCLEAR:
        return False
    return None if is_negative(found) else found


def is_detection(row, thresholds: dict) -> bool:
    """The model calls the row's label there: its confidence is at or above the label's
    threshold (a row without either counts)."""
    threshold = thresholds.get(row.label)
    return row.confidence is None or threshold is None or row.confidence >= threshold


def summarize(rows: list, thresholds: dict, labels=(), windows: int = None,
              audio_hours: float = None) -> dict:
    """Per label: `precision` over the reviewed rows the model calls that label
    (`is_detection`), all strategies together and `by_strategy`; `prevalence`, the share
    of reviewed `random` windows that hold the label, with the windows and hours of the
    run that share amounts to when `windows` / `audio_hours` are given."""
    rows = [r for r in rows if not r.added]   # the items review chose, not rows a reviewer added
    known = tuple(dict.fromkeys([*labels, *table_labels(rows)]))
    answers = {id(r): answer(r, known) for r in rows}
    holds = {key: truth(a) for key, a in answers.items()}
    reviewed = [r for r in rows if holds[id(r)] is not False]
    random_rows = [r for r in reviewed if r.strategy == "random"]
    names = list(dict.fromkeys([*labels, *(r.label for r in rows),
                                *(holds[id(r)] for r in reviewed if holds[id(r)])]))
    out = {}
    for label in names:
        detections = [r for r in reviewed if r.label == label and is_detection(r, thresholds)]
        precision = proportion(sum(holds[id(r)] == label for r in detections), len(detections))
        precision["by_strategy"] = {
            s: proportion(sum(holds[id(r)] == label for r in found), len(found))
            for s in sorted({r.strategy for r in detections})
            for found in [[r for r in detections if r.strategy == s]]}
        prevalence = proportion(sum(holds[id(r)] == label for r in random_rows), len(random_rows))
        if prevalence["estimate"] is not None:
            if windows is not None:
                prevalence["windows_in_run"] = round(prevalence["estimate"] * windows)
            if audio_hours is not None:
                prevalence["hours_in_run"] = round(prevalence["estimate"] * audio_hours, 3)
        out[label] = {"precision": precision, "prevalence": prevalence}
    return {"items": len(rows), "reviewed": len(reviewed),
            "not_reviewed": len(rows) - len(reviewed),
            "unclear_verdicts": sum(a is UNCLEAR for a in answers.values()),
            "random_reviewed": len(random_rows), "confidence_level": CONFIDENCE_LEVEL,
            "labels": out}
