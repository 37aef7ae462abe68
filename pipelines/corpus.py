"""What a corpus is: recordings with labels and a split, from a folder/glob or a manifest.

Labels come from the file's parent folder (`--input`) or the manifest's label column.
A recording's split is a stable hash of its key (its path relative to the corpus root,
or its manifest group), so a recording never spans two splits and adding files never
moves old ones; or, with a manifest's split column (`--split-column fold --test-values 5`),
the rows' values choose it (`ManifestColumns`).
"""
import csv
import dataclasses
import io
import logging
import os
import posixpath
import string

from earmark.model import annotations, audio, file_kinds
from earmark.model.data_files import SPLITS  # noqa: F401  (pipelines' name for them)
from earmark.model.splits import split_of
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
    split: str = None     # the split a manifest's --split-column chose; None: model.splits


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


def check_output_outside(source: Source, output: str, flag: str = "--input") -> None:
    """An --output inside a folder being listed (at any depth) would be read as part of
    the corpus on the next run: refused in one line. (A glob matches what it names.)"""
    if source.kind != "folder":
        return
    root = source.root.rstrip("/")
    if output.rstrip("/") == root or output.startswith(root + "/"):
        raise UserError(f"--output {output} is inside {flag} {source.spec}: earmark would read "
                        "its own outputs as input; choose an output folder outside it")


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


DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclasses.dataclass(frozen=True)
class ManifestColumns:
    """Which columns of a manifest earmark reads, so a dataset's metadata file is read as it
    ships (ESC-50's `esc50.csv`: `--path-column filename --label-column category
    --split-column fold --test-values 5`). `path` is a column, or a template over columns in
    braces (UrbanSound8K: `fold{fold}/{slice_file_name}`). `group`: None reads the column
    `group` when there is one. `split`: a column whose `test_values` (and `validation_values`)
    choose those rows' split; the other rows are train, or, without `validation_values`,
    train/validation by the stable hash at --split's train:validation ratio."""
    path: str = "path"
    label: str = "label"
    group: str = None
    split: str = None
    test_values: tuple = ()
    validation_values: tuple = ()

    @classmethod
    def from_args(cls, args) -> "ManifestColumns":
        """The manifest flags a command parsed (those it lacks count as not given); a flag
        that needs --manifest or another flag without it: a one-line UserError."""
        given = {flag: getattr(args, flag.lstrip("-").replace("-", "_"), None)
                 for flag in ("--path-column", "--group-column", "--split-column",
                              "--test-values", "--validation-values", "--audio-root")}
        if not getattr(args, "manifest", None):
            used = [flag for flag, value in given.items() if value is not None]
            if used:
                raise UserError(f"{used[0]} reads a manifest; it applies only with --manifest "
                                "CSV (drop it, or give the corpus as a manifest)")
            return cls()
        split = given["--split-column"]
        test = _values(given["--test-values"], "--test-values")
        validation = _values(given["--validation-values"], "--validation-values")
        if split is not None and not test:
            raise UserError(f"--split-column {split} needs --test-values: the {split} values "
                            f"of the test rows, comma-separated (e.g. --test-values 5)")
        if split is None and (test or validation):
            flag = "--test-values" if test else "--validation-values"
            raise UserError(f"{flag} needs --split-column: the column holding those values "
                            "(e.g. --split-column fold)")
        both = sorted(set(test) & set(validation))
        if both:
            raise UserError(f"--test-values and --validation-values both name {','.join(both)}; "
                            "a value chooses one split")
        return cls(path=given["--path-column"] or "path",
                   label=getattr(args, "label_column", None) or "label",
                   group=given["--group-column"], split=split, test_values=test,
                   validation_values=validation)

    def record(self):
        """features.json `split_column`: how the split column chose splits, or None."""
        if self.split is None:
            return None
        return {"column": self.split, "test_values": list(self.test_values),
                "validation_values": list(self.validation_values)}


def _values(text, flag) -> tuple:
    if text is None:
        return ()
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise UserError(f"{flag} {text!r} names no value; give them comma-separated, e.g. 5 or 4,5")
    return values


def _path_fields(template: str) -> list:
    """The columns a --path-column names: itself, or a template's fields (`{fold}`)."""
    if "{" not in template and "}" not in template:
        return [template]
    fields = []
    try:
        for _, field, spec, conversion in string.Formatter().parse(template):
            if field is None:
                continue
            if not field or spec or conversion or any(ch in field for ch in ".[]"):
                raise ValueError(field)
            fields.append(field)
    except ValueError:
        fields = []
    if not fields:
        raise UserError(f"--path-column {template!r} is not a column name nor a template of "
                        "column names in braces, e.g. 'fold{fold}/{slice_file_name}'")
    return fields


def _row_path(row: dict, template: str, fields: list) -> str:
    """A row's path: its path column, or the template filled in; "" when a part is empty."""
    values = {f: (row.get(f) or "").strip() for f in fields}
    if fields == [template]:
        return values[template]
    if not all(values.values()):
        return ""
    return "".join(literal + (values[field] if field is not None else "")
                   for literal, field, _, _ in string.Formatter().parse(template))


def read_manifest(manifest_path: str, require_label: bool = True,
                  columns: ManifestColumns = None, audio_root: str = None,
                  fractions=DEFAULT_FRACTIONS):
    """Rows of a `path,label[,group]` CSV, or of the columns `columns` names; relative paths
    resolve against `audio_root` (default: the CSV's folder). For labeling
    (`require_label=False`) only the path is needed. Other columns are ignored and named in
    the log. With a split column each Recording carries its split (ManifestColumns).
    `audio_root` (--audio-root) must be a folder. A manifest that is not a regular file (a
    FIFO, a device: never opened) or is over `file_kinds.MAX_TABLE_BYTES` (never read), not
    UTF-8, a row with more fields than the header, a missing column, or one file given two
    labels or two split values: a one-line UserError."""
    columns = columns or ManifestColumns()
    limit = file_kinds.MAX_TABLE_BYTES
    try:  # a FIFO, a device (a link to /dev/zero) or a file over the bound: never read
        data = fs.read_user_file(manifest_path, f"--manifest {manifest_path}", limit, "a manifest",
                                 f"pass a regular CSV file (at most {file_kinds.megabytes(limit)}; "
                                 "split a larger one)")
    except UserError:
        raise
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
    path_fields = _path_fields(columns.path)
    group_column = columns.group or "group"
    read = _check_header(manifest_path, reader.fieldnames or [], columns, path_fields,
                         require_label)
    # metadata files as datasets ship them carry more columns (ESC-50: target, esc10, ...):
    # read past, named once; an empty header cell (a trailing comma) is no column
    unknown = [c for c in reader.fieldnames if c.strip() and c not in read]
    if unknown:
        logging.getLogger("earmark.corpus").warning(
            "--manifest %s: columns %s ignored (earmark reads %s)", manifest_path,
            ", ".join(repr(c) for c in unknown), ",".join(read))
    base = _audio_root(audio_root) or fs.dirname(manifest_path)
    rows, first_label = [], {}
    splits = _SplitColumn(manifest_path, columns, group_column) if columns.split else None
    for row in reader:
        line_no = reader.line_num
        if row.get(None):
            raise UserError(f"--manifest {manifest_path} line {line_no}: "
                            f"{len(reader.fieldnames) + len(row[None])} fields but the header "
                            f"has {len(reader.fieldnames)}; quote values that hold commas")
        path = _row_path(row, columns.path, path_fields)
        label = (row.get(columns.label) or "").strip()
        if not path or (require_label and not label):
            raise UserError(f"--manifest {manifest_path} line {line_no}: empty {columns.path} "
                            f"or {columns.label}; every row needs both")
        group = (row.get(group_column) or "").strip()
        key = path if not require_label else group or path
        resolved = _resolve(path, base, manifest_path, line_no, audio_root)
        if require_label:
            before = first_label.setdefault(resolved, (label, line_no))
            if before[0] != label:
                raise UserError(f"--manifest {manifest_path} lines {before[1]} and {line_no} "
                                f"give {path} two labels ({before[0]!r}, {label!r}); keep the "
                                "row with the right label and delete the other")
        if splits:
            splits.add(row, line_no, path, resolved, group)
        rows.append(Recording(resolved, label, key))
    if not rows:
        raise UserError(f"--manifest {manifest_path} has no rows; add "
                        f"{columns.path},{columns.label} lines")
    return splits.assign(rows, fractions) if splits else rows


def _check_header(manifest_path, header, columns, path_fields, require_label) -> list:
    """→ the columns read, in order; one that is missing: a UserError naming the columns
    found and the flag that chooses it."""
    wanted = [(f, "path", "--path-column") for f in path_fields]
    if require_label:
        wanted.append((columns.label, "label", "--label-column"))
    if columns.group is not None:
        wanted.append((columns.group, "group", "--group-column"))
    if columns.split is not None:
        wanted.append((columns.split, "split", "--split-column"))
    missing = [w for w in wanted if w[0] not in header]
    if missing:
        name, role, flag = missing[0]
        optional = f" (and optional {columns.group or 'group'})" if columns.group is None else ""
        raise UserError(f"--manifest {manifest_path} needs a header with columns "
                        f"{','.join(w[0] for w in wanted)}{optional}; found "
                        f"{[c for c in header if c.strip()]}; no {name!r} column: name the "
                        f"{role} column with {flag}")
    read = [w[0] for w in wanted]
    for optional in (columns.label, columns.group or "group"):
        if optional in header and optional not in read:
            read.append(optional)
    return read


class _SplitColumn:
    """--split-column: each row's value, checked (a file, or a group, in one value only; every
    --test-values / --validation-values value present), then the split of every row."""

    def __init__(self, manifest_path, columns, group_column):
        self._manifest, self._columns, self._group_column = manifest_path, columns, group_column
        self._values = []                     # one per row, in order
        self._by_path, self._by_group = {}, {}

    def add(self, row, line_no, path, resolved, group) -> None:
        column = self._columns.split
        value = (row.get(column) or "").strip()
        before = self._by_path.setdefault(resolved, (value, line_no))
        if before[0] != value:
            raise UserError(f"--manifest {self._manifest} lines {before[1]} and {line_no} list "
                            f"{path} with {column} {before[0]!r} and {value!r}; a file belongs "
                            "to one split: keep the row with the right value")
        if group:
            before = self._by_group.setdefault(group, (value, line_no))
            if before[0] != value:
                raise UserError(f"--manifest {self._manifest} lines {before[1]} and {line_no}: "
                                f"group {group!r} ({self._group_column}) has {column} "
                                f"{before[0]!r} and {value!r}; a group stays in one split: "
                                f"fix the {column} values or choose another --group-column")
        self._values.append(value)

    def assign(self, recordings, fractions) -> list:
        c = self._columns
        found = sorted(set(self._values), key=lambda v: (not v.isdigit(), int(v) if v.isdigit()
                                                          else 0, v))
        for flag, values in (("--test-values", c.test_values),
                             ("--validation-values", c.validation_values)):
            absent = [v for v in values if v not in found]
            if absent:
                shown = ", ".join(repr(v) for v in found[:20]) + (", ..." if len(found) > 20 else "")
                raise UserError(f"{flag} {','.join(absent)}: no row of --manifest "
                                f"{self._manifest} has that {c.split} value; its {c.split} "
                                f"values are {shown}")
        train, validation = fractions[0], fractions[1]
        out = []
        for r, value in zip(recordings, self._values):
            if value in c.test_values:
                split = "test"
            elif value in c.validation_values:
                split = "validation"
            elif c.validation_values:
                split = "train"
            elif train + validation <= 0:
                raise UserError(f"--split gives train and validation no share, and rows outside "
                                f"--test-values need one (e.g. --split 80/10/10), or name "
                                f"their --validation-values")
            else:
                split = split_of(r.key, (train / (train + validation),
                                         validation / (train + validation), 0.0))
            out.append(dataclasses.replace(r, split=split))
        return out


def _audio_root(audio_root: str):
    """--audio-root made absolute; a local one must be a folder."""
    if audio_root is None:
        return None
    if not fs.is_gcs(audio_root) and not os.path.isdir(audio_root):
        raise UserError(f"--audio-root {audio_root} is not a folder; name the folder the "
                        "manifest's relative paths are relative to")
    return fs.absolute(audio_root).rstrip("/") or "/"


def _resolve(path: str, base: str, manifest_path: str, line_no: int, audio_root: str = None) -> str:
    if fs.is_gcs(path) or path.startswith("/"):
        return path
    normalized = posixpath.normpath(path.replace("\\", "/"))
    if normalized == ".." or normalized.startswith("../"):
        where = "--audio-root" if audio_root else "the manifest's folder"
        raise UserError(f"--manifest {manifest_path} line {line_no}: {path!r} escapes {where}; "
                        "use a path inside it or an absolute path")
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
    """One table read; its rows and bad rows name the table by its full path (dead letter).
    A table that is not a regular file (a FIFO, a device, a broken link), is over
    `file_kinds.MAX_TABLE_BYTES` or cannot be read is never opened or read whole: it is a
    bad table, which leaves out the recording it is named after."""
    limit, what = file_kinds.MAX_TABLE_BYTES, "an annotation table"
    found = fs.stat_entry(path)
    if found.problem:
        return _bad_table(path, found.problem, found.detail)
    if found.size_bytes > limit:
        return _bad_table(path, "too_large", file_kinds.too_large(found.size_bytes, limit, what))
    try:
        data = fs.read_user_file(path, path, limit, what)
    except UserError:  # it held more than its size said (a /proc file, one still growing)
        return _bad_table(path, "too_large", file_kinds.too_large(None, limit, what))
    except OSError as e:
        return _bad_table(path, "read_error", f"{type(e).__name__}: {e}"[:300])
    table = annotations.read_table(name, data, label_column, encoding)
    return dataclasses.replace(table, rows=[dataclasses.replace(r, source=path) for r in table.rows],
                               bad=[dataclasses.replace(b, source=path) for b in table.bad])


def _bad_table(path, reason, detail) -> annotations.Table:
    return annotations.Table([], [annotations.BadAnnotation(path, 0, reason, detail)], "", "")


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
    found = fs.stat_entry(annotations_path)
    if not fs.is_gcs(annotations_path) and not os.path.isdir(annotations_path) and found.problem:
        raise UserError(f"--annotations {annotations_path}: {found.detail}; pass a folder of "
                        "tables or one regular table file")
    if annotations_path.lower().endswith(ANNOTATION_EXTENSIONS) and not found.problem:
        file_kinds.check_size(f"--annotations {annotations_path}", found.size_bytes,
                              file_kinds.MAX_TABLE_BYTES, "an annotation table",
                              "pass a smaller table, or split it into one table per recording")
        return [annotations_path], fs.dirname(annotations_path)
    root = annotations_path.rstrip("/")
    files = [e.path for e in fs.list_files(root) if e.path.lower().endswith(ANNOTATION_EXTENSIONS)]
    if not files:
        raise UserError(f"--annotations {annotations_path}: no .txt or .csv tables found there")
    return sorted(files), root
