"""What a corpus is: recordings with labels and a split, from a folder/glob or a manifest.

Labels come from the file's parent folder (`--input`) or the manifest's `label` column.
A recording's split is a stable hash of its key (its path relative to the corpus root,
or its manifest `group`), so a recording never spans two splits and adding files never
moves old ones.
"""
import csv
import dataclasses
import hashlib
import io
import logging
import os
import posixpath

from earmark.model import annotations, audio
from earmark.model.data_files import SPLITS
from earmark.model.errors import UserError
from earmark.pipelines import fs

AUDIO_EXTENSIONS = audio.AUDIO_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class Recording:
    path: str    # absolute local path or gs:// URI
    label: str   # a clip's label ("" for annotated recordings and for labeling)
    key: str     # split key: path relative to the corpus root, or the manifest group
    events: tuple = None  # annotated recordings: `model.annotations.AnnotationRow`s; None: a clip
    ignore_s: tuple = ()  # annotated recordings: (start_s, end_s) spans of rows that could not
    #                       be used: windows touching them are left out of training
    split: str = None     # the split a manifest's --split-column chose; None: assign_split(key)


def assign_split(key: str, fractions=(0.8, 0.1, 0.1)) -> str:
    """Stable split of a recording key: same key, same split, on every machine."""
    digest = hashlib.sha256(("earmark-split:" + key).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    edge = 0.0
    for split, fraction in zip(SPLITS, fractions):
        edge += fraction
        if u < edge:
            return split
    return SPLITS[-1]


def parse_fractions(text: str):
    """'80/10/10' or '0.8,0.1,0.1' → (0.8, 0.1, 0.1)."""
    try:
        parts = [float(p) for p in text.replace("/", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise UserError(f"--split {text!r} must be three non-negative numbers "
                        "for train/validation/test, e.g. 80/10/10")
    total = sum(parts)
    return tuple(p / total for p in parts)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where --input's files come from: a folder listed literally (its name is data, never a
    pattern), one file, or a glob the user wrote (`'corpus/*/*.wav'`, used only when no file
    or folder has that very name). `root` is what keys are relative to."""
    kind: str   # "folder", "file" or "glob"
    spec: str   # the folder, the file or the pattern
    root: str


def input_source(input_path: str, flag: str = "--input") -> Source:
    input_path = input_path.rstrip("/") or "/"
    if fs.is_gcs(input_path):
        if fs.has_glob(input_path) and not fs.match(fs.escape_glob(input_path)) \
                and not fs.match(fs.join(fs.escape_glob(input_path), "**")):
            return Source("glob", input_path, _glob_root(input_path))
        found = fs.stat_entry(input_path)
        if not found.problem:
            return Source("file", input_path, fs.dirname(input_path))
        return Source("folder", input_path, input_path)
    if os.path.isdir(input_path):
        return Source("folder", input_path, input_path)
    if os.path.lexists(input_path):
        return Source("file", input_path, os.path.dirname(input_path))
    if fs.has_glob(input_path):
        return Source("glob", input_path, _glob_root(input_path))
    raise UserError(f"{flag} {input_path} does not exist; pass a folder, a file or a glob "
                    "such as 'corpus/*/*.wav'")


def _glob_root(pattern: str) -> str:
    root = pattern
    while fs.has_glob(root):
        root = fs.dirname(root)
    return root


def list_paths(source: Source) -> list:
    """The paths a Source holds, sorted: the same list in the launcher and in a pipeline's
    ListFiles step, so every listed path is accounted for."""
    if source.kind == "folder":
        return [e.path for e in fs.list_files(source.spec)]
    if source.kind == "file":
        return [source.spec]
    return fs.match(source.spec)


def list_clip_paths(source: Source) -> list:
    """The files of a clip corpus: those in a label folder (`DIR/<label>/...`); files
    directly in the root (a README, the manifest) are not part of it. A glob lists what it
    matches."""
    paths = list_paths(source)
    if source.kind != "folder":
        return paths
    return [p for p in paths if label_from_key(relative_key(p, source.root))]


def label_from_key(key: str) -> str:
    """A clip's label: the first folder under the corpus root, at any depth below it
    (`snore/night 1/a.wav` → `snore`); "" for a file directly in the root."""
    first, sep, _ = key.replace("\\", "/").partition("/")
    return first if sep else ""


def relative_key(path: str, root: str) -> str:
    root = root.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path


def clip_recording(path: str, root: str) -> Recording:
    key = relative_key(path, root)
    return Recording(path, label_from_key(key), key)


def list_input(input_path: str):
    """Labeled clips under --input (DIR/<label>/...) → (recordings, Source); a clear
    UserError when there are none."""
    source = input_source(input_path)
    paths = list_clip_paths(source)
    if not paths:
        raise UserError(f"--input {input_path}: no files matched in label folders; a folder "
                        "corpus needs one sub-folder per label (DIR/<label>/<file>)")
    return [clip_recording(p, source.root) for p in paths], source


def list_audio(input_path: str):
    """Every file under a folder (recursively), one file, or a glob's matches, for labeling
    → (paths, Source)."""
    source = input_source(input_path)
    paths = list_paths(source)
    if not paths:
        raise UserError(f"--input {input_path}: no files found there")
    return paths, source


def unique_recordings(recordings):
    """Manifest rows naming one file twice count once (the first row is kept) → (unique
    recordings, duplicates dropped)."""
    seen, out = set(), []
    for r in recordings:
        if r.path not in seen:
            seen.add(r.path)
            out.append(r)
    return out, len(recordings) - len(out)


MANIFEST_COLUMNS = ("path", "label", "group")


def read_manifest(manifest_path: str, require_label: bool = True):
    """Rows of a `path,label[,group]` CSV; relative paths resolve against its folder.
    For labeling (`require_label=False`) only `path` is needed; other columns are ignored
    and named in the log. Not UTF-8, a row with more fields than the header, or one file
    given two labels: a one-line UserError."""
    try:
        data = fs.read_bytes(manifest_path)
    except Exception as e:
        raise UserError(f"--manifest {manifest_path} cannot be read ({type(e).__name__}); "
                        "check the path") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"--manifest {manifest_path} is not UTF-8 text (byte "
                        f"0x{data[e.start]:02x} on line {line}); save it as UTF-8 (a "
                        "spreadsheet's 'CSV UTF-8')") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or [])
    needed = {"path", "label"} if require_label else {"path"}
    if not needed <= columns:
        raise UserError(f"--manifest {manifest_path} needs a header with columns "
                        f"{','.join(sorted(needed, reverse=True))} (and optional group); "
                        f"found {sorted(columns)}")
    # metadata files as datasets ship them carry more columns (ESC-50: fold, target, ...):
    # read past, named once; an empty header cell (a trailing comma) is no column
    unknown = [c for c in reader.fieldnames if c.strip() and c not in MANIFEST_COLUMNS]
    if unknown:
        logging.getLogger("earmark.corpus").warning(
            "--manifest %s: columns %s ignored (earmark reads %s)", manifest_path,
            ", ".join(repr(c) for c in unknown), ",".join(MANIFEST_COLUMNS))
    base = fs.dirname(manifest_path)
    recordings, first_label = [], {}
    for row in reader:
        line_no = reader.line_num
        if row.get(None):
            raise UserError(f"--manifest {manifest_path} line {line_no}: "
                            f"{len(reader.fieldnames) + len(row[None])} fields but the header "
                            f"has {len(reader.fieldnames)}; quote values that hold commas")
        path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not path or (require_label and not label):
            raise UserError(f"--manifest {manifest_path} line {line_no}: empty path or label; "
                            "every row needs both")
        key = path if not require_label else (row.get("group") or "").strip() or path
        resolved = _resolve(path, base, manifest_path, line_no)
        if require_label:
            before = first_label.setdefault(resolved, (label, line_no))
            if before[0] != label:
                raise UserError(f"--manifest {manifest_path} lines {before[1]} and {line_no} "
                                f"give {path} two labels ({before[0]!r}, {label!r}); keep the "
                                "row with the right label and delete the other")
        recordings.append(Recording(resolved, label, key))
    if not recordings:
        raise UserError(f"--manifest {manifest_path} has no rows; add path,label lines")
    return recordings


def _resolve(path: str, base: str, manifest_path: str, line_no: int) -> str:
    if fs.is_gcs(path) or path.startswith("/"):
        return path
    normalized = posixpath.normpath(path.replace("\\", "/"))
    if normalized == ".." or normalized.startswith("../"):
        raise UserError(f"--manifest {manifest_path} line {line_no}: {path!r} escapes the "
                        "manifest's folder; use a path inside it or an absolute path")
    return fs.join(base, normalized)


ANNOTATION_EXTENSIONS = (".txt", ".csv")


@dataclasses.dataclass
class AnnotatedCorpus:
    """Annotated recordings, and what could not be used before the pipeline runs."""
    recordings: list      # Recording with `events` (rows), for every annotated recording
    unannotated: list     # Recording that no table annotates
    unusable: list        # (Recording with the rows it had, why): left out, a table of it
    #                       could not be read whole
    not_audio: list       # files under --input that are neither audio nor a table
    bad: list             # model.annotations.BadAnnotation
    tables: list          # one TableSummary per annotation file, in path order


@dataclasses.dataclass
class TableSummary:
    """What became of one annotation file's rows (stats.json `annotations.per_table`):
    rows = events + events_left_out + sum(failed_by_reason)."""
    table: str                 # its path
    format: str                # Raven, Audacity, CSV; "" when it could not be read
    encoding: str              # what it was decoded as
    rows: int = 0              # rows read (a table that could not be read: 1)
    events: int = 0            # rows that label windows of a recording
    events_left_out: int = 0   # good rows of recordings left out whole
    failed_by_reason: dict = dataclasses.field(default_factory=dict)
    recordings: int = 0        # recordings it annotates that are used
    recordings_left_out: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def list_annotated(input_path: str, annotations_path: str, label_column: str,
                   encoding: str = None) -> AnnotatedCorpus:
    """Recordings under --input (every audio file, any depth) matched to the tables under
    --annotations (a folder, searched recursively, or one file). `encoding`: the tables'
    text encoding when not UTF-8 (--annotation-encoding; default: UTF-8, UTF-16 with a BOM,
    else Windows-1252 with a note)."""
    paths, source = list_audio(input_path)
    root = source.root
    table_files, table_root = _annotation_files(annotations_path)
    candidates = [p for p in paths if p not in set(table_files)]
    keys = {relative_key(p, root): p for p in candidates
            if os.path.splitext(p)[1].lower() in AUDIO_EXTENSIONS}
    index = annotations.RecordingIndex(sorted(keys))
    read = [(path, _read_table(path, relative_key(path, table_root), label_column, encoding))
            for path in table_files]
    if read and all(t.bad and t.bad[0].reason == "no_label_column" for _, t in read):
        first = read[0][1].bad[0]
        raise UserError(f"--annotations {annotations_path}: no table has a {label_column!r} "
                        f"column ({first.source}: {first.detail})")
    _note_encodings(read)
    matched, bad, unusable, ignore_s, per_table = {}, [], {}, {}, []
    for path, table in read:
        name = relative_key(path, table_root)
        found, unmatched = annotations.match_table(index, name, table.rows)
        unmatched = [dataclasses.replace(b, source=path) for b in unmatched]
        for key, rows in found.items():
            matched.setdefault(key, []).extend(rows)
        left_out, spans = annotations.untrusted(index, name, table.rows, table.bad + unmatched)
        for key, why in left_out.items():
            unusable.setdefault(key, why)
        for key, found_spans in spans.items():
            ignore_s.setdefault(key, []).extend(found_spans)
        bad += table.bad + unmatched
        per_table.append((path, table, found, unmatched))
    recordings = [Recording(keys[k], "", k, tuple(sorted(rows, key=annotations.time_order)),
                            tuple(sorted(ignore_s.get(k, ()))))
                  for k, rows in sorted(matched.items()) if k not in unusable]
    unannotated = [Recording(p, "", k) for k, p in sorted(keys.items())
                   if k not in matched and k not in unusable]
    not_audio = [Recording(p, "", relative_key(p, root)) for p in candidates
                 if os.path.splitext(p)[1].lower() not in AUDIO_EXTENSIONS]
    return AnnotatedCorpus(
        recordings, unannotated,
        [(Recording(keys[k], "", k, tuple(matched.get(k, ()))), why)
         for k, why in sorted(unusable.items())],
        not_audio, bad, [_summary(*t, unusable) for t in per_table])


def _read_table(path, name, label_column, encoding):
    """One table read; its rows and bad rows name the table by its full path (dead letter)."""
    table = annotations.read_table(name, fs.read_bytes(path), label_column, encoding)
    return dataclasses.replace(table, rows=[dataclasses.replace(r, source=path) for r in table.rows],
                               bad=[dataclasses.replace(b, source=path) for b in table.bad])


def _note_encodings(read) -> None:
    """One log line naming the tables read in the fallback encoding."""
    names = [path for path, t in read if t.encoding == annotations.FALLBACK_ENCODING]
    if names:
        logging.getLogger("earmark.corpus").warning(
            "%d annotation table(s) are not UTF-8 and were read as Windows-1252 (%s%s); if "
            "their labels look wrong, name the encoding with --annotation-encoding",
            len(names), ", ".join(names[:3]), ", ..." if len(names) > 3 else "")


def _summary(path, table, found, unmatched, unusable) -> TableSummary:
    failed = {}
    for b in table.bad + unmatched:
        failed[b.reason] = failed.get(b.reason, 0) + 1
    used = [k for k in found if k not in unusable]
    empty_unmatched = sum(1 for b in unmatched if b.line == 0)  # an empty table, no recording
    return TableSummary(
        path, table.format, table.encoding, len(table.rows) + len(table.bad) + empty_unmatched,
        events=sum(len(found[k]) for k in used),
        events_left_out=sum(len(rows) for k, rows in found.items() if k in unusable),
        failed_by_reason=dict(sorted(failed.items())), recordings=len(used),
        recordings_left_out=len(set(found) - set(used)))


def _annotation_files(annotations_path: str):
    """→ (annotation files, their root): every .txt/.csv under a folder, or the one file."""
    if not fs.is_gcs(annotations_path) and not os.path.exists(annotations_path):
        raise UserError(f"--annotations {annotations_path} does not exist; pass a folder of "
                        "Raven/Audacity tables or a CSV file,start_s,end_s,label")
    if annotations_path.lower().endswith(ANNOTATION_EXTENSIONS) and \
            not fs.stat_entry(annotations_path).problem:
        return [annotations_path], fs.dirname(annotations_path)
    root = annotations_path.rstrip("/")
    files = [e.path for e in fs.list_files(root) if e.path.lower().endswith(ANNOTATION_EXTENSIONS)]
    if not files:
        raise UserError(f"--annotations {annotations_path}: no .txt or .csv tables found there")
    return sorted(files), root
