"""Annotation files → events per recording.

Users annotate long recordings in Raven Pro (selection tables, `*.selections.txt`),
Audacity (label tracks, `.txt`) or a spreadsheet (CSV `file,start_s,end_s,label`), or
verify detections that BirdNET-Analyzer wrote (`*.BirdNET.selection.table.txt`,
`*.BirdNET.results.csv`) or that `earmark review` chose (a table with a `verdict` column:
`verdict_label`). `read_table` decodes one file as the tool wrote it (UTF-8,
UTF-16 with a BOM, or Windows-1252 from Raven on Windows) and its parser turns the text
into `AnnotationRow`s and `BadAnnotation`s (earmark's dead letter: a bad row never stops
the good ones, and nothing here raises on bad content); `match_recordings` then assigns
the rows to recordings by the file they name or the table's own name.

Pure Python on strings: no filesystem access. Paths are posix strings relative to
the annotations root (tables) or the recordings root (recording keys). Names are data,
never patterns: `[`, `*`, `?`, spaces and any Unicode match only themselves.
"""
import csv
import dataclasses
import io
import math
import posixpath
import re
import typing

from earmark.model.events import Event
from earmark.model.window_labels import NEGATIVE_PREFIXES, spelling_key

RAVEN_BEGIN = "Begin Time (s)"
RAVEN_END = "End Time (s)"
RAVEN_SELECTION = "Selection"
RAVEN_FILE = "Begin File"
RAVEN_PATH = "Begin Path"  # BirdNET-Analyzer's and Raven's multi-file tables: a full path
RAVEN_FILE_OFFSET = "File Offset (s)"
CSV_COLUMNS = ("file", "start_s", "end_s", "label")
# the names other tools give CSV columns (BirdNET-Analyzer: Start (s),End (s),...,File);
# matched case-insensitively, first found wins; the label column is --label-column or these
CSV_ALIASES = {"file": ("file", "filepath", "path"), "start_s": ("start_s", "Start (s)", "start"),
               "end_s": ("end_s", "End (s)", "end"), "label": ("label",)}
# a table with this column (any case) holds verdicts on proposed events (`earmark review`)
VERDICT_COLUMN = "verdict"
STRATEGY_COLUMN = "strategy"   # how `earmark review` chose an item; empty on a row a reviewer added
# what a verdict cell may say (any case, spaces around ignored): yes / no on the item's
# label; an undecided answer, read as no answer (left out, never a negative); or a label
VERDICT_YES, VERDICT_NO = ("yes", "y"), ("no", "n")
VERDICT_UNDECIDED = ("?", "??", "unsure", "not sure", "maybe", "unknown", "skip", "skipped",
                     "n/a", "na", "-")
# answers that are neither yes, no nor a label's name: refused (`unclear_verdict`), never
# guessed; so is a near miss of yes or no ("yse", "no.", "Yes!") that is no label of the table
VERDICT_UNCLEAR = ("true", "false", "t", "f", "1", "0", "x", "ok", "yeah", "yep", "yup",
                   "nope", "nah", "correct", "incorrect", "wrong", "right", "positive",
                   "negative", "pos", "neg", "+", "--")
# Windows' code page, what Raven Pro on Windows writes; read with a note when not UTF-8
FALLBACK_ENCODING = "cp1252"

_BOM = "\ufeff"
_RAVEN_SUFFIX = ".selections.txt"
_RAVEN_TABLE = re.compile(r"\.Table\.\d+$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class AnnotationRow:
    """One annotated event as read. `file` is the recording the row names (CSV `file`,
    Raven `Begin File`), or None when the table's own name says which recording."""
    file: str | None
    start_s: float
    end_s: float
    label: str
    source: str  # the annotation file it came from, as given to the parser
    line: int  # 1-based line number in that file


@dataclasses.dataclass(frozen=True)
class BadAnnotation:
    """A row or file that could not be used; goes to earmark's dead letter."""
    source: str
    line: int  # 0 when the whole file is bad
    reason: str  # short snake_case, see the parsers and match_recordings
    detail: str  # one human line
    span_s: tuple = None  # (start_s, end_s) when the row's times were read: its windows are
    #                      left out of training; None: the span is unknown
    file: str = None  # the recording the row names, when it names one and that was read


Parsed = tuple[list[AnnotationRow], list[BadAnnotation]]


class _BadRow(Exception):
    """Raised inside the parsers to reject one row; never leaves this module."""

    def __init__(self, reason: str, detail: str, span_s: tuple = None, file: str = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.span_s = span_s
        self.file = file

    def record(self, source: str, line: int) -> BadAnnotation:
        return BadAnnotation(source, line, self.reason, self.detail, self.span_s, self.file)


# ---------------------------------------------------------------- small helpers

def _lines(text: str) -> list[str]:
    """Lines without BOM or line endings (LF, CRLF); index i is line i + 1."""
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    return [line.rstrip("\r") for line in text.split("\n")]


def _number(cell: str, column: str, decimal_comma: bool = False) -> float:
    """A finite float from a cell; `1,5` reads as 1.5 when `decimal_comma`."""
    cell = cell.strip()
    if decimal_comma and "," in cell and "." not in cell:
        cell = cell.replace(",", ".", 1)
    try:
        value = float(cell)
    except ValueError:
        raise _BadRow("bad_row", f"{column} {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise _BadRow("bad_row", f"{column} {cell!r} is not a finite number")
    return value


def _checked_row(file: str | None, start_s: float, end_s: float, label: str,
                 source: str, line: int) -> AnnotationRow:
    """The row, or _BadRow when its times or label make no event."""
    # the span a rejected row still marks (a point label: the windows touching the point)
    low, high = max(0.0, min(start_s, end_s)), max(start_s, end_s, 0.0)
    span_s = (low, max(high, low + 1e-3))
    file = file or None
    if start_s < 0:
        raise _BadRow("negative_start", f"start {start_s:g} s is negative", span_s, file)
    if end_s <= start_s:
        raise _BadRow("end_not_after_start",
                      f"end {end_s:g} s is not after start {start_s:g} s", span_s, file)
    label = label.strip()
    if not label:
        raise _BadRow("no_label", "the label is empty", span_s, file)
    return AnnotationRow(file, start_s, end_s, label, source, line)


def _column(header: list[str], *names: str) -> int | None:
    """Index of the first of `names` in a header: exact, else case-insensitive if unique."""
    for name in names:
        if name in header:
            return header.index(name)
        folded = [i for i, cell in enumerate(header) if cell.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
    return None


def _header(cells: list[str]) -> list[str]:
    """Header names, stripped, without the empty names a trailing separator leaves."""
    header = [cell.strip() for cell in cells]
    while header and not header[-1]:
        header.pop()
    return header


def _fitted(cells: list[str], header: list[str], pad: bool) -> list[str]:
    """A row as wide as its header, read as the tools write it: empty cells past the
    header's last column are dropped (a trailing separator); with `pad` (Raven, which
    leaves out empty trailing cells) a short row gets empty cells. A CSV row stays bad when
    short: an empty `file` cell there would move the row to another recording."""
    if len(cells) > len(header) and not any(cell.strip() for cell in cells[len(header):]):
        cells = cells[:len(header)]
    if len(cells) < len(header) and pad:
        cells = cells + [""] * (len(header) - len(cells))
    if len(cells) != len(header):
        raise _BadRow("bad_row", f"{len(cells)} columns where the header has {len(header)}")
    return cells


def _cells_in_column(lines: list[str], header: list[str], column: int) -> tuple:
    """The distinct non-empty cells of a Raven table's `column`, in order (rows that cannot
    be read left out: the parser reports them)."""
    found = {}
    for line in lines:
        try:
            cell = _fitted(line.split("\t"), header, pad=True)[column].strip() if line.strip() else ""
        except _BadRow:
            continue
        if cell:
            found[cell] = None
    return tuple(found)


# ---------------------------------------------------------------- parsers

def parse_raven(text: str, source: str, label_column: str = "Annotation") -> Parsed:
    """A Raven selection table: tab-separated, header row, columns in any order.

    Raven writes one row per view (Spectrogram 1, Waveform 1) for the same Selection:
    each Selection counts once (its first row). With a `Begin Path` (a full path, as
    BirdNET-Analyzer and Raven's multi-file tables write it) or `Begin File` column the row
    names its recording; with `File Offset (s)` too, the event starts at that offset in the
    file. Rows shorter than the header have empty trailing cells (Raven leaves them out).
    With a `Verdict` column (`earmark review`'s tables) each row is `verdict_label`'s.
    """
    lines = _lines(text)
    header = _header(lines[0].split("\t"))
    begin, end = _column(header, RAVEN_BEGIN), _column(header, RAVEN_END)
    if begin is None or end is None:
        return [], [BadAnnotation(source, 0, "unknown_format",
                                  f"not a Raven selection table: needs {RAVEN_BEGIN!r} and "
                                  f"{RAVEN_END!r}, found columns {header}")]
    label = _column(header, label_column)
    if label is None:
        return [], [BadAnnotation(source, 0, "no_label_column",
                                  f"no {label_column!r} column; found columns {header}; "
                                  f"choose one with --label-column")]
    selection = _column(header, RAVEN_SELECTION)
    file = _column(header, RAVEN_PATH, RAVEN_FILE)
    offset = _column(header, RAVEN_FILE_OFFSET)
    verdict, strategy = _column(header, VERDICT_COLUMN), _column(header, STRATEGY_COLUMN)
    labels = () if verdict is None else _cells_in_column(lines[1:], header, label)

    rows, bad, seen = [], [], set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            cells = _fitted(line.split("\t"), header, pad=True)
            key = cells[selection].strip() if selection is not None else ""
            if key in seen:
                continue  # the same selection in another view
            if key:
                seen.add(key)
            name = cells[file].strip() or None if file is not None else None
            try:
                start_s = _number(cells[begin], RAVEN_BEGIN)
                end_s = _number(cells[end], RAVEN_END)
                if name is not None and offset is not None and cells[offset].strip():
                    # Begin Time counts from the start of a multi-file sequence; File Offset
                    # is where the event starts within its own file.
                    in_file_s = _number(cells[offset], RAVEN_FILE_OFFSET)
                    start_s, end_s = in_file_s, in_file_s + (end_s - start_s)
            except _BadRow as e:
                raise _BadRow(e.reason, e.detail, None, name) from None
            text = cells[label] if verdict is None else \
                _verdicted(cells[label], cells[verdict], start_s, end_s, name, labels,
                           added=strategy is not None and not cells[strategy].strip())
            rows.append(_checked_row(name, start_s, end_s, text, source, number))
        except _BadRow as e:
            bad.append(e.record(source, number))
    return rows, bad


def parse_audacity(text: str, source: str) -> Parsed:
    """An Audacity label track: `start<TAB>end<TAB>label` lines, no header.

    Lines starting with a tab or a backslash are the frequency lines of spectral labels
    (`\\<TAB>low_hz<TAB>high_hz`) and are skipped. Point labels (start == end) are bad.
    Numbers may use a decimal comma (`1,5`), as Audacity writes them in some locales.
    """
    rows, bad = [], []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip() or line.startswith(("\t", "\\")):
            continue
        cells = line.split("\t", 2)
        try:
            if len(cells) < 2:
                raise _BadRow("bad_row", f"{len(cells)} column where start, end and label "
                                         f"are expected")
            start_s = _number(cells[0], "start", decimal_comma=True)
            end_s = _number(cells[1], "end", decimal_comma=True)
            label = cells[2] if len(cells) == 3 else ""
            rows.append(_checked_row(None, start_s, end_s, label, source, number))
        except _BadRow as e:
            bad.append(e.record(source, number))
    return rows, bad


def parse_csv(text: str, source: str, label_column: str = "label") -> Parsed:
    """A CSV table with header `file,start_s,end_s,label` (any order, any case; extra
    columns ignored; quoted fields may hold commas). Other tools' names are read too
    (`CSV_ALIASES`: BirdNET-Analyzer's `Start (s),End (s),...,File`); the label is
    `label_column` when the table has it, else `label`. Without a `file` column (as
    make_night.py writes its truth), or with an empty one, a row belongs to the recording
    the table is named after (`night.csv` ↔ `night.wav`). A table with a `verdict` column
    is a verdict table (`parse_verdicts`): its rows are `verdict_annotations`'."""
    header, reader = _csv_header(text)
    if _column(header, VERDICT_COLUMN) is not None:
        return verdict_annotations(*parse_verdicts(text, source))
    where = {name: _column(header, *CSV_ALIASES[name]) for name in CSV_COLUMNS}
    where["label"] = _column(header, label_column, *CSV_ALIASES["label"])
    missing = [name for name, index in where.items() if index is None and name != "file"]
    if missing == ["label"]:
        return [], [BadAnnotation(source, 0, "no_label_column",
                                  f"no {label_column!r} or 'label' column; found columns "
                                  f"{header}; choose one with --label-column")]
    if missing:
        return [], [BadAnnotation(source, 0, "unknown_format",
                                  f"CSV needs columns {','.join(CSV_COLUMNS)}; "
                                  f"found columns {header}")]
    rows, bad = [], []
    for number, cells in _csv_records(reader, header, source, bad):
        try:
            file, start_s, end_s = _csv_span(cells, where)
            rows.append(_checked_row(file, start_s, end_s,
                                     cells[where["label"]], source, number))
        except _BadRow as e:
            bad.append(e.record(source, number))
    return rows, bad


def _csv_header(text: str):
    """(header names, the csv reader positioned after the header) of a CSV table's text."""
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = _header(next(reader))
    except (StopIteration, csv.Error):
        header = []
    return header, reader


def _csv_records(reader, header: list, source: str, bad: list):
    """(line number, cells as wide as the header) of each record after the header that is
    not blank; a record that cannot be read or has the wrong width goes to `bad`."""
    number = reader.line_num + 1  # where the next record starts (quoted fields may span lines)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            bad.append(BadAnnotation(source, number, "bad_row", f"unreadable CSV: {e}"))
            number = reader.line_num + 1
            continue
        if any(cell.strip() for cell in cells):  # else a blank line, or a spreadsheet's empty row
            try:
                fitted = _fitted(cells, header, pad=False)
            except _BadRow as e:
                bad.append(e.record(source, number))
            else:
                yield number, fitted
        number = reader.line_num + 1


def _csv_span(cells: list, where: dict) -> tuple:
    """(file or None, start_s, end_s) of a CSV record; `where`: column → index."""
    file = cells[where["file"]].strip() or None if where["file"] is not None else None
    try:
        return (file, _number(cells[where["start_s"]], "start_s"),
                _number(cells[where["end_s"]], "end_s"))
    except _BadRow as e:
        raise _BadRow(e.reason, e.detail, None, file) from None


# ---------------------------------------------------------------- verdict tables

# review.csv / verdicts.csv (`earmark review`): proposed events and what a person said of them
VERDICT_COLUMNS = ("file", "start_s", "end_s", "label", "confidence", "strategy", "verdict")
NEGATIVE_PREFIX = "not_"   # a `no` verdict's label: a negative (`window_labels.is_negative`)


@dataclasses.dataclass(frozen=True)
class VerdictRow:
    """One row of a verdict table as read; `verdict` as written ("" when not reviewed)."""
    file: str | None
    start_s: float
    end_s: float
    label: str
    confidence: float | None   # None when the table has no such column or the cell is empty
    strategy: str
    verdict: str
    source: str
    line: int
    added: bool = False   # the table has a strategy column and this row's is empty: not an
    #                       item `earmark review` chose, a selection the reviewer added


def table_labels(rows) -> tuple:
    """The labels a verdict table's items carry, in order of first appearance: what a
    verdict may name besides yes and no (`verdict_label`)."""
    return tuple(dict.fromkeys(r.label.strip() for r in rows if r.label.strip()))


def verdict_cells(row) -> list:
    """A row's VERDICT_COLUMNS as text: times to the millisecond, confidence to 4 decimals
    (empty when None)."""
    return [row.file, f"{row.start_s:.3f}", f"{row.end_s:.3f}", row.label,
            "" if row.confidence is None else f"{row.confidence:.4f}", row.strategy, row.verdict]


def verdict_table(rows) -> str:
    """review.csv / verdicts.csv text of `rows` (objects with VERDICT_COLUMNS' attributes):
    `verdict_cells`, "\n" line ends, a field quoted when it holds a comma, a double quote
    or a line break (review.html writes the same bytes); what `parse_verdicts` reads."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")   # so "\r" is quoted like "\n"
    lines = []
    for cells in [list(VERDICT_COLUMNS)] + [verdict_cells(r) for r in rows]:
        writer.writerow(cells)
        lines.append(buffer.getvalue()[:-2] + "\n")
        buffer.seek(0)
        buffer.truncate()
    return "".join(lines)


VERDICT_RAVEN_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\t"
                        "Low Freq (Hz)\tHigh Freq (Hz)\tAnnotation\tConfidence\tStrategy\t"
                        "Verdict\n")


def verdict_raven_table(rows, low_hz: float, high_hz: float) -> str:
    """A Raven selection table of one recording's verdict rows, `Verdict` empty for a
    reviewer to fill in Raven; `parse_raven` reads it back as verdicts (labels in the
    `Annotation` column, Raven's default). Tabs and line breaks in a label become spaces."""
    def clean(text):
        return re.sub(r"[\t\r\n]", " ", text)
    return VERDICT_RAVEN_HEADER + "".join(
        f"{i}\tSpectrogram 1\t1\t{r.start_s:.3f}\t{r.end_s:.3f}\t{low_hz:.1f}\t{high_hz:.1f}\t"
        f"{clean(r.label)}\t{'' if r.confidence is None else f'{r.confidence:.4f}'}\t"
        f"{clean(r.strategy)}\t{clean(r.verdict)}\n" for i, r in enumerate(rows, start=1))


def parse_verdicts(text: str, source: str) -> tuple[list[VerdictRow], list[BadAnnotation]]:
    """A verdict table (`VERDICT_COLUMNS`; `confidence` and `strategy` may be absent, and
    `file` as in `parse_csv`) → its rows as written, and the rows that cannot be read."""
    header, reader = _csv_header(text)
    where = {name: _column(header, name) for name in VERDICT_COLUMNS}
    missing = [n for n in ("start_s", "end_s", "label", "verdict") if where[n] is None]
    if missing:
        return [], [BadAnnotation(source, 0, "unknown_format",
                                  f"a verdict table needs columns {','.join(VERDICT_COLUMNS)}; "
                                  f"found columns {header}")]
    rows, bad = [], []
    for number, cells in _csv_records(reader, header, source, bad):
        try:
            file, start_s, end_s = _csv_span(cells, where)
            rows.append(VerdictRow(
                file, start_s, end_s, cells[where["label"]].strip(),
                _confidence(cells[where["confidence"]] if where["confidence"] is not None else ""),
                cells[where["strategy"]].strip() if where["strategy"] is not None else "",
                cells[where["verdict"]].strip(), source, number,
                added=where["strategy"] is not None and not cells[where["strategy"]].strip()))
        except _BadRow as e:
            bad.append(e.record(source, number))
    return rows, bad


def _confidence(cell: str) -> float | None:
    """A verdict row's confidence, or None when empty or not a number (it is only shown)."""
    try:
        return _number(cell, "confidence") if cell.strip() else None
    except _BadRow:
        return None


def verdict_label(label: str, verdict: str, labels=()) -> str | None:
    """What a verdict on a proposed event of `label` makes of it (`labels`: the labels of
    the table's items, which a verdict may name): `yes` / `y` → an event of `label`; `no` /
    `n` → a negative (`not_<label>`: a span holding no event); a label's name → an event
    of that label (matched to the table's labels in any case: `Snore` is `snore`), and
    `not snore` / `not_snore` its negative; empty or undecided (`?`, `unsure`, ...) → None
    (no answer: nothing, never a negative). ValueError for an answer that is none of these
    (`VERDICT_UNCLEAR`, or a near miss of yes / no such as `yse` or `no.`), rather than a
    new label no one meant. Another name is a new label, as written."""
    verdict, label = verdict.strip(), label.strip()
    word = " ".join(verdict.lower().split())
    if not word or word in VERDICT_UNDECIDED:
        return None
    if word in VERDICT_YES:
        return label
    if word in VERDICT_NO:
        return NEGATIVE_PREFIX + label
    known = {spelling_key(l.strip()): l.strip() for l in (*labels, label) if l.strip()}
    if spelling_key(word) in known:
        return known[spelling_key(word)]
    negated = re.fullmatch(r"(?:not|no|non)[\s_-]+(.+)", word)
    if negated and spelling_key(negated.group(1)) in known:
        return NEGATIVE_PREFIX + known[spelling_key(negated.group(1))]
    if word in VERDICT_UNCLEAR or any(_one_edit(word, w) for w in VERDICT_YES + VERDICT_NO
                                      if len(w) > 1) \
            or (negated and not word.startswith(NEGATIVE_PREFIXES)):   # `not cough`: not a label
        raise ValueError(f"verdict {verdict!r} is neither yes, no nor a label of the table "
                         f"({', '.join(sorted(known.values()))})")
    return verdict


def _one_edit(a: str, b: str) -> bool:
    """`a` is `b` with one character added, removed, replaced, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _verdicted(label: str, verdict: str, start_s: float, end_s: float, file: str | None,
               labels=(), added: bool = False) -> str:
    """`verdict_label`, or _BadRow (its span left out, never a negative): `no_verdict` when
    not reviewed, `unclear_verdict` when the verdict cannot be read as an answer. `added`:
    a row no `earmark review` strategy chose (a selection the reviewer drew in Raven, its
    label typed): without a verdict it is an annotation of its label, as in any table."""
    span = (min(start_s, end_s), max(start_s, end_s))
    if added and not verdict.strip() and label.strip():
        return label.strip()
    try:
        found = verdict_label(label, verdict, labels)
    except ValueError as e:
        raise _BadRow("unclear_verdict", f"{e}: left out, never a negative; write yes, no or "
                      "a label's name", span, file) from None
    if found is None:
        said = repr(verdict.strip()) if verdict.strip() else "empty"
        raise _BadRow("no_verdict", f"not reviewed ({said} verdict): left out, never a "
                      "negative", span, file)
    return found


def verdict_annotations(rows: list[VerdictRow], bad: list[BadAnnotation]) -> Parsed:
    """A verdict table's rows as annotations (`verdict_label`); a row without a verdict is
    a bad row `no_verdict`, whose span is left out of training."""
    out, bad = [], list(bad)
    labels = table_labels(rows)
    for r in rows:
        try:
            label = _verdicted(r.label, r.verdict, r.start_s, r.end_s, r.file, labels,
                               added=r.added)
            out.append(_checked_row(r.file, r.start_s, r.end_s, label, r.source, r.line))
        except _BadRow as e:
            bad.append(e.record(r.source, r.line))
    return out, sorted(bad, key=lambda b: b.line)


class AnnotationFormat(typing.NamedTuple):
    name: str  # for messages
    parse: typing.Callable  # (text, source, label_column) → Parsed


# One entry per annotation format: a key that starts with "." is a file-name suffix (any
# case); any other key is a column its first line holds (so a table exported under another
# name is still read). The first entry that matches, in this order, parses the file.
# Adding a format is one entry.
ANNOTATION_PARSERS = {
    ".csv": AnnotationFormat("CSV", parse_csv),
    _RAVEN_SUFFIX: AnnotationFormat("Raven", parse_raven),
    RAVEN_BEGIN: AnnotationFormat("Raven", parse_raven),
    ".txt": AnnotationFormat("Audacity",
                             lambda text, source, label_column: parse_audacity(text, source)),
}


def _suffixes() -> list[str]:
    return [key for key in ANNOTATION_PARSERS if key.startswith(".")]


def _format(name: str, text: str) -> AnnotationFormat | None:
    lowered = name.lower()
    first = None
    for key, fmt in ANNOTATION_PARSERS.items():
        if key.startswith("."):
            if lowered.endswith(key):
                return fmt
        else:
            first = _lines(text)[0] if first is None else first
            if key in first:
                return fmt
    return None


_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def decode_table(data: bytes, encoding: str = None) -> tuple[str, str]:
    """→ (text, the encoding it was read in), as the tools write tables: a byte-order mark
    decides (UTF-8, UTF-16 LE or BE); else `encoding` when given; else UTF-8, else
    Windows-1252 (`FALLBACK_ENCODING`: Raven Pro on Windows). Raises `_BadRow` when the
    bytes are none of these."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding = name
            break
    tries = [encoding] if encoding else ["utf-8", FALLBACK_ENCODING]
    for name in tries:
        try:
            return data.decode(name), name
        except LookupError:
            raise _BadRow("unknown_encoding", f"--annotation-encoding {name!r} is not an "
                                              "encoding Python knows; e.g. utf-8, cp1252") from None
        except UnicodeDecodeError as e:
            error = e
    raise _BadRow("undecodable", f"not {' or '.join(tries)} text (byte 0x{data[error.start]:02x} "
                                 f"at offset {error.start}); save it as UTF-8 or name its "
                                 "encoding with --annotation-encoding")


VERDICTS = "verdicts"   # a verdict table's format name ends with it: "CSV verdicts"


@dataclasses.dataclass(frozen=True)
class Table:
    """One annotation file as read: its rows, its bad rows, and how it was read."""
    rows: list       # AnnotationRow
    bad: list        # BadAnnotation
    format: str      # "Raven", "Audacity", "CSV", "CSV verdicts", "Raven verdicts"; "" when
    #                  it could not be read
    encoding: str    # what it was decoded as; "" when it could not be

    @property
    def verdicts(self) -> bool:
        """Verified proposals (`earmark review`): they say nothing of the time between."""
        return self.format.endswith(VERDICTS)


def _has_verdicts(text: str, found: AnnotationFormat) -> bool:
    """Whether a CSV or Raven table's header has a verdict column."""
    if found.parse is parse_csv:
        header = _csv_header(text)[0]
    elif found.parse is parse_raven:
        header = _header(_lines(text)[0].split("\t"))
    else:
        return False
    return _column(header, VERDICT_COLUMN) is not None


def read_table(name: str, data: bytes, label_column: str = "Annotation",
               encoding: str = None) -> Table:
    """One annotation file's bytes, decoded (`decode_table`) and parsed in the format its
    name and first line say (`ANNOTATION_PARSERS`): `.csv` → CSV; `.selections.txt` or a
    first line with `Begin Time (s)` → Raven; other `.txt` → Audacity. `name` becomes the
    rows' `source`."""
    try:
        text, encoding = decode_table(data, encoding)
    except _BadRow as e:
        return Table([], [e.record(name, 0)], "", "")
    found = _format(name, text)
    if found is not None:
        rows, bad = found.parse(text, name, label_column)
        kind = f"{found.name} {VERDICTS}" if _has_verdicts(text, found) else found.name
        return Table(rows, bad, kind, encoding)
    names = [f"{s} ({ANNOTATION_PARSERS[s].name})" for s in _suffixes()]
    return Table([], [BadAnnotation(name, 0, "unknown_format",
                                    f"not {', '.join(names[:-1])} or {names[-1]}")], "", encoding)


def parse_file(name: str, data: bytes, label_column: str = "Annotation",
               encoding: str = None) -> Parsed:
    """`read_table`'s rows and bad rows."""
    table = read_table(name, data, label_column, encoding)
    return table.rows, table.bad


# ---------------------------------------------------------------- matching

# How tools name a table after its recording, longest first (matched in any case):
# Raven `<rec>.Table.N.selections.txt` / `<rec>.selections.txt`, BirdNET-Analyzer
# `<rec>.BirdNET.selection.table.txt` / `<rec>.BirdNET.results.csv`, Audacity
# `<rec>.audacity.txt` / `<rec>.txt`, a spreadsheet `<rec>.csv`.
TABLE_NAME_SUFFIXES = (".BirdNET.selection.table.txt", ".BirdNET.results.csv",
                       ".selections.txt", ".audacity.txt", ".txt", ".csv")


def table_recording_name(table_name: str) -> str:
    """The recording a table is named after, from its base name (`TABLE_NAME_SUFFIXES`):
    `rec.Table.1.selections.txt`, `rec.BirdNET.selection.table.txt`, `rec.txt`, `rec.csv`
    → `rec`; `rec.flac.selections.txt` → `rec.flac`."""
    base = posixpath.basename(table_name)
    lowered = base.lower()
    for suffix in TABLE_NAME_SUFFIXES:
        if lowered.endswith(suffix.lower()):
            stem = base[:-len(suffix)]
            return _RAVEN_TABLE.sub("", stem) if suffix == _RAVEN_SUFFIX else stem
    return base


def _path_parts(path: str) -> list[str]:
    """A path a table holds, as components: `/`, or `\\` (a Windows path from the machine
    that wrote the table), separate them; a drive (`C:`) is dropped."""
    parts = [p for p in path.replace("\\", "/").split("/") if p and p != "."]
    return parts[1:] if parts and re.fullmatch(r"[A-Za-z]:", parts[0]) else parts


def _common_tail(a: list[str], b: list[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


class RecordingIndex:
    """Recording keys indexed by base name and by base name without extension."""

    def __init__(self, keys: list[str]):
        self.keys = set(keys)
        self.by_base: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for key in sorted(self.keys):
            base = posixpath.basename(key)
            self.by_base.setdefault(base, []).append(key)
            self.by_stem.setdefault(posixpath.splitext(base)[0], []).append(key)

    def for_file(self, file: str, table: str) -> list[str]:
        """Recordings a row's `file` names: the key itself, else the key beside the
        table (Raven writes bare names), else those with the same base name, and of
        several the ones sharing the most trailing folders with it (a `Begin Path` written
        on another machine: `D:\\site A\\rec.wav` → `site A/rec.wav`)."""
        for key in (file, posixpath.normpath(file),
                    posixpath.normpath(posixpath.join(posixpath.dirname(table), file))):
            if key in self.keys:
                return [key]
        parts = _path_parts(file)
        found = self.by_base.get(parts[-1], []) if parts else []
        if len(found) > 1:
            tails = {key: _common_tail(parts, key.split("/")) for key in found}
            found = [key for key in found if tails[key] == max(tails.values())]
        return found

    def for_table(self, table: str) -> list[str]:
        """Recordings a table is named after; those in the table's folder first."""
        name = table_recording_name(table)
        found = sorted(set(self.by_base.get(name, []) + self.by_stem.get(name, [])))
        folder = posixpath.dirname(table)
        beside = [key for key in found if posixpath.dirname(key) == folder]
        return beside or found


    def candidates(self, table: str, file: str | None) -> list[str]:
        """Recordings a row of `table` may belong to: the one its `file` names, else the
        one the table is named after."""
        return self.for_file(file, table) if file is not None else self.for_table(table)


def _unmatched(source: str, line: int, what: str, found: list[str],
               row: AnnotationRow = None) -> BadAnnotation:
    span = (row.start_s, row.end_s) if row is not None else None
    file = row.file if row is not None else None
    if not found:
        return BadAnnotation(source, line, "missing_recording", f"no recording {what}", span, file)
    return BadAnnotation(source, line, "ambiguous_recording",
                         f"{len(found)} recordings {what}: {', '.join(found)}", span, file)


def match_table(index: RecordingIndex, table: str, rows: list[AnnotationRow],
                ) -> tuple[dict[str, list[AnnotationRow]], list[BadAnnotation]]:
    """One table's rows per recording key (an empty table: its recording, no rows), and
    the rows (or the empty table) no single recording fits; see `match_recordings`."""
    by_name = index.for_table(table)
    what_by_name = f"named after the table ({table_recording_name(table)!r})"
    events: dict[str, list[AnnotationRow]] = {}
    bad: list[BadAnnotation] = []
    if not rows:
        if len(by_name) == 1:
            events[by_name[0]] = []
        else:
            bad.append(_unmatched(table, 0, what_by_name, by_name))
    for row in rows:
        if row.file is not None:
            found, what = index.for_file(row.file, table), f"matches {row.file!r}"
        else:
            found, what = by_name, what_by_name
        if len(found) == 1:
            events.setdefault(found[0], []).append(row)
        else:
            bad.append(_unmatched(row.source, row.line, what, found, row))
    return events, bad


def match_recordings(
        tables: list[tuple[str, list[AnnotationRow]]], recording_keys: list[str],
) -> tuple[dict[str, list[AnnotationRow]], list[BadAnnotation]]:
    """The rows of each recording key (sorted by time; each row keeps its `source` and
    `line` for the dead letter) for every recording some table annotates (an empty list:
    annotated, no events), and the rows or tables no single recording fits.

    A row naming a `file` goes to that recording (see `RecordingIndex.for_file`); other
    rows, and empty tables, go to the recording the table is named after
    (`table_recording_name`), preferring the one in the table's folder. No match →
    `missing_recording`; several → `ambiguous_recording` (naming every candidate).
    """
    index = RecordingIndex(recording_keys)
    events: dict[str, list[AnnotationRow]] = {}
    bad: list[BadAnnotation] = []
    for table, rows in tables:
        found, unmatched = match_table(index, table, rows)
        for key, matched in found.items():
            events.setdefault(key, []).extend(matched)
        bad += unmatched
    return {key: sorted(found, key=time_order) for key, found in events.items()}, bad


def untrusted(index: RecordingIndex, table: str, rows: list[AnnotationRow],
              bad: list[BadAnnotation]) -> tuple[dict[str, str], dict[str, list[tuple]]]:
    """What the rows a table could not use mean for the recordings: a failure is never a
    negative. → ({key: why} recordings to leave out whole, {key: [(start_s, end_s)]} spans
    whose windows are left out of training).

    A row whose times were read makes its span ambiguous in the recording it names (or, when
    that is ambiguous, in each candidate). A table that could not be read, or a row whose
    times are unknown, leaves out every recording the table annotates: without the row, an
    event there would train as background."""
    whole, spans = [], {}
    for b in bad:
        if b.reason == "missing_recording" or (b.reason == "ambiguous_recording" and b.line == 0):
            continue  # no recording here holds the row; an empty table hides no event
        if b.line == 0 or b.span_s is None:
            whole.append(b)
            continue
        for key in index.candidates(table, b.file):
            spans.setdefault(key, []).append(tuple(b.span_s))
    if not whole:
        return {}, spans
    keys = set(match_table(index, table, rows)[0]) | set(index.for_table(table))
    keys |= {key for b in whole if b.file is not None for key in index.for_file(b.file, table)}
    first = whole[0]
    why = (f"{first.source} line {first.line}: {first.detail} ({len(bad)} problem(s) in that "
           "table); fix the table, or its events would train as background")
    return {key: why for key in sorted(keys)}, spans


def time_order(row: AnnotationRow):
    return row.start_s, row.end_s, row.label, row.source, row.line


def to_events(rows) -> list:
    """AnnotationRows → sorted `Event`s."""
    return sorted(Event(r.start_s, r.end_s, r.label) for r in rows)
