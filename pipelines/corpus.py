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
import os
import posixpath

from model import annotations, audio
from model.errors import UserError
from pipelines import fs

SPLITS = ("train", "validation", "test")
AUDIO_EXTENSIONS = audio.AUDIO_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class Recording:
    path: str    # absolute local path or gs:// URI
    label: str   # a clip's label ("" for annotated recordings and for labeling)
    key: str     # split key: path relative to the corpus root, or the manifest group
    events: tuple = None  # annotated recordings: `model.annotations.AnnotationRow`s; None: a clip


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


def input_pattern(input_path: str):
    """--input DIR_OR_GLOB → (glob pattern, corpus root used for keys)."""
    if fs.has_glob(input_path):
        root = input_path
        while fs.has_glob(root):
            root = fs.dirname(root)
        return input_path, root
    root = input_path.rstrip("/")
    # Files of a directory corpus live in class folders: DIR/<label>/...
    return fs.join(root, "*", "**"), root


def label_from_path(path: str) -> str:
    """A file's label is the name of its parent folder."""
    return posixpath.basename(posixpath.dirname(path.replace("\\", "/")))


def relative_key(path: str, root: str) -> str:
    root = root.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path


def list_input(input_path: str):
    """Recordings under --input; a clear UserError when there are none."""
    pattern, root = input_pattern(input_path)
    if not fs.has_glob(input_path) and not fs.is_gcs(input_path):
        import os
        if not os.path.exists(input_path):
            raise UserError(f"--input {input_path} does not exist; pass a folder of class "
                            "sub-folders or a glob such as 'corpus/*/*.wav'")
    paths = fs.match(pattern)
    if not paths:
        raise UserError(f"--input {input_path}: no files matched {pattern}; a folder corpus "
                        "needs one sub-folder per label (DIR/<label>/<file>)")
    return [Recording(p, label_from_path(p), relative_key(p, root)) for p in paths], pattern, root


def list_audio(input_path: str):
    """Every file under a folder (recursively) or matching a glob, for labeling."""
    if fs.has_glob(input_path):
        pattern, root = input_pattern(input_path)
    else:
        root = input_path.rstrip("/")
        pattern = fs.join(root, "**")
        if not fs.is_gcs(input_path):
            import os
            if not os.path.exists(input_path):
                raise UserError(f"--input {input_path} does not exist; pass a folder or a glob "
                                "such as 'nights/*.flac'")
            if os.path.isfile(input_path):
                pattern, root = input_path, os.path.dirname(input_path)
    paths = fs.match(pattern)
    if not paths:
        raise UserError(f"--input {input_path}: no files matched {pattern}")
    return paths, pattern, root


def read_manifest(manifest_path: str, require_label: bool = True):
    """Rows of a `path,label[,group]` CSV; relative paths resolve against its folder.
    For labeling (`require_label=False`) only `path` is needed."""
    try:
        text = fs.read_bytes(manifest_path).decode("utf-8-sig")
    except Exception as e:
        raise UserError(f"--manifest {manifest_path} cannot be read ({type(e).__name__}); "
                        "check the path") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or [])
    needed = {"path", "label"} if require_label else {"path"}
    if not needed <= columns:
        raise UserError(f"--manifest {manifest_path} needs a header with columns "
                        f"{','.join(sorted(needed, reverse=True))} (and optional group); "
                        f"found {sorted(columns)}")
    base = fs.dirname(manifest_path)
    recordings = []
    for line_no, row in enumerate(reader, start=2):
        path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not path or (require_label and not label):
            raise UserError(f"--manifest {manifest_path} line {line_no}: empty path or label; "
                            "every row needs both")
        key = path if not require_label else (row.get("group") or "").strip() or path
        recordings.append(Recording(_resolve(path, base, manifest_path, line_no), label, key))
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
    bad: list             # model.annotations.BadAnnotation
    tables: int


def list_annotated(input_path: str, annotations_path: str, label_column: str) -> AnnotatedCorpus:
    """Recordings under --input (every audio file, any depth) matched to the tables under
    --annotations (a folder, searched recursively, or one file)."""
    paths, _, root = list_audio(input_path)
    tables, bad = [], []
    table_files, table_root = _annotation_files(annotations_path)
    for path in table_files:
        rows, errors = annotations.parse_file(relative_key(path, table_root),
                                              fs.read_bytes(path), label_column)
        # dead-letter records name the table by its full path
        rows = [dataclasses.replace(r, source=path) for r in rows]
        bad += [dataclasses.replace(b, source=path) for b in errors]
        tables.append((relative_key(path, table_root), rows))
    if tables and all(b.reason == "no_label_column" for b in bad) and len(bad) == len(tables):
        raise UserError(f"--annotations {annotations_path}: no table has a {label_column!r} "
                        f"column ({bad[0].detail}); choose the label column with --label-column")
    keys = {relative_key(p, root): p for p in paths if p not in set(table_files)
            and os.path.splitext(p)[1].lower() in AUDIO_EXTENSIONS}
    matched, unmatched = annotations.match_recordings(tables, sorted(keys))
    recordings = [Recording(keys[k], "", k, tuple(rows)) for k, rows in sorted(matched.items())]
    unannotated = [Recording(p, "", k) for k, p in sorted(keys.items()) if k not in matched]
    return AnnotatedCorpus(recordings, unannotated, bad + unmatched, len(tables))


def _annotation_files(annotations_path: str):
    """→ (annotation files, their root): every .txt/.csv under a folder, or the one file."""
    if not fs.is_gcs(annotations_path) and not os.path.exists(annotations_path):
        raise UserError(f"--annotations {annotations_path} does not exist; pass a folder of "
                        "Raven/Audacity tables or a CSV file,start_s,end_s,label")
    if annotations_path.lower().endswith(ANNOTATION_EXTENSIONS) and fs.match(annotations_path):
        return [annotations_path], fs.dirname(annotations_path)
    root = annotations_path.rstrip("/")
    files = [p for p in fs.match(fs.join(root, "**")) if p.lower().endswith(ANNOTATION_EXTENSIONS)]
    if not files:
        raise UserError(f"--annotations {annotations_path}: no .txt or .csv tables found there")
    return sorted(files), root
