"""What earmark writes into an `--output` folder, and that it writes nowhere else.

* `recording_name`: the one rule naming a recording's per-recording outputs (Raven,
  Audacity, scores) inside the output, whatever its path: a key relative to the corpus
  root as it is, anything else (absolute, gs://, another bucket) under `external/`.
* The output manifest `earmark_outputs.json`: the command, run id and every file (relative
  to the output) that earmark wrote there. A run writes it at its start with what it is
  about to write (and, where names are not known yet, glob `patterns`: shards, Beam's
  `beam-temp-*` folders), and again at its end, `complete`, with exactly what it wrote.
* `claim`: the check at the start of `prepare` and `label`. An output holding files is
  refused, unless `--overwrite`, which removes exactly the files the manifest lists (and the
  manifest) and nothing else; a folder without a manifest is not earmark's to clear.
* `remove_beam_temp`: Beam's temporary write folders, left behind by a failed run.

Local paths and gs:// alike, through Beam's filesystems (match, create, delete).
"""
import hashlib
import json
import logging
import os
import posixpath
import re

from earmark.model.errors import UserError
from earmark.pipelines import fs

log = logging.getLogger("earmark.outputs")

MANIFEST_FILE = "earmark_outputs.json"
SOURCES_FILE = "sources.csv"
EXTERNAL_DIR = "external"
BEAM_TEMP_PATTERN = "beam-temp-**"
ATOMIC_TEMP_PATTERN = "*.json.*.tmp"  # what `atomic_write` leaves when killed mid-write


def recording_name(key: str, source: str) -> str:
    """A recording's output name, relative to the output folder's format folders (`raven/`,
    `audacity/`, `scores/`): its key when that is a relative path (without `..`, not under
    `external/`), else `external/<first 12 hex digits of sha256(source)>/<file name>` — one
    name per source URI, so two recordings never share a name and nothing lands outside."""
    k = (key or "").replace("\\", "/")
    norm = posixpath.normpath(k) if k else ""
    parts = norm.split("/")
    relative = (k and not k.startswith("/") and "://" not in k and not re.match(r"^[A-Za-z]:", k)
                and norm != "." and ".." not in parts and parts[0] != EXTERNAL_DIR)
    if relative:
        return norm
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    base = posixpath.basename(source.replace("\\", "/").rstrip("/")) or "recording"
    return f"{EXTERNAL_DIR}/{digest}/{base}"


def sources_csv(rows) -> bytes:
    """`sources.csv`: name,source per recording (sorted by name), written with the csv
    module; a name is what `raven/<name>.selections.txt` and the others are named after."""
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "source"])
    w.writerows(sorted(set(rows)))
    return buf.getvalue().encode()


# --- listing, writing, deleting ---------------------------------------------------------

def _root(output: str) -> str:
    return output.rstrip("/") if fs.is_gcs(output) else os.path.abspath(output)


def relative(output: str, path: str) -> str:
    """`path` (under `output`) relative to it, with `/` separators."""
    root = _root(output)
    rel = path[len(root):].lstrip("/\\") if path.startswith(root) else path
    return rel.replace(os.sep, "/")


def list_files(output: str) -> list:
    """Every file under `output` (any depth), relative to it, sorted; [] when it is absent."""
    if not fs.is_gcs(output):
        root = _root(output)
        if not os.path.isdir(root):
            return []
        return sorted(relative(root, os.path.join(d, n)) for d, _, names in os.walk(root)
                      for n in names)
    return sorted(relative(output, e.path) for e in fs.list_files(output))


def atomic_write(path: str, data: bytes) -> None:
    """Replace `path` whole: a local file through a temporary file and `os.replace`; a
    gs:// object write is atomic by itself."""
    if fs.is_gcs(path):
        fs.write_bytes(path, data)
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_manifest(output: str):
    """The output manifest, or None when earmark has not written one there."""
    path = fs.join(output, MANIFEST_FILE)
    return fs.read_json(path) if exists(path) else None


def exists(path: str) -> bool:
    """A file (local) or object (gs://) is there; the path is data, never a pattern."""
    if fs.is_gcs(path):
        return bool(fs.match(fs.escape_glob(path)))
    return os.path.isfile(path)


def write_manifest(output: str, manifest: dict) -> None:
    atomic_write(fs.join(output, MANIFEST_FILE),
                 (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def begin(output: str, command: str, run_id: str, files, patterns=(), incremental=False,
          previous: dict = None) -> dict:
    """Write the manifest of a run about to start: the files it will write (and `patterns`
    for those whose names it cannot know yet), added to `previous`' (an incremental run
    continuing the folder). → the manifest."""
    prev = previous or {}
    manifest = {"command": command, "run_id": run_id, "incremental": bool(incremental),
                "complete": False,
                "files": sorted(set(prev.get("files", ())) | set(files) | {MANIFEST_FILE}),
                "patterns": sorted(set(prev.get("patterns", ())) | set(patterns)
                                   | {BEAM_TEMP_PATTERN, ATOMIC_TEMP_PATTERN})}
    write_manifest(output, manifest)
    return manifest


def finish(output: str, command: str, run_id: str, files, incremental=False) -> None:
    """Rewrite the manifest at the end of a run: complete, with the files it wrote added to
    those the folder's manifest lists already (an incremental folder keeps every run's)."""
    prev = read_manifest(output) or {}
    write_manifest(output, {
        "command": command, "run_id": run_id, "incremental": bool(incremental),
        "complete": True,
        "files": sorted(set(prev.get("files", ())) | set(files) | {MANIFEST_FILE}),
        "patterns": []})


def _pattern_regex(pattern: str):
    out = ""
    for part in re.split(r"(\*\*|\*|\?)", pattern):
        out += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out + r"\Z")


def delete(output: str, names) -> None:
    """Delete files under `output` (relative names), then the local folders they leave
    empty (up to, not including, `output`)."""
    names = sorted(set(names))
    if not names:
        return
    paths = [fs.join(output, n) for n in names]
    for i in range(0, len(paths), 500):
        fs.FileSystems.delete(paths[i:i + 500])
    if not fs.is_gcs(output):
        root = _root(output)
        for d in sorted({os.path.dirname(os.path.join(root, n)) for n in names},
                        key=len, reverse=True):
            while d.startswith(root + os.sep):
                try:
                    os.rmdir(d)
                except OSError:
                    break
                d = os.path.dirname(d)


def remove_listed(output: str, manifest: dict, present=None) -> list:
    """Delete what `manifest` says earmark wrote (its files; for a run that did not finish,
    also what its patterns match), then the manifest. → the names deleted."""
    present = set(list_files(output) if present is None else present)
    listed = set(manifest.get("files", ()))
    patterns = [_pattern_regex(p) for p in manifest.get("patterns", ())]
    doomed = sorted(n for n in present - {MANIFEST_FILE}
                    if n in listed or any(p.match(n) for p in patterns))
    delete(output, doomed)
    if MANIFEST_FILE in present:
        delete(output, [MANIFEST_FILE])
    return doomed


def remove_beam_temp(folder: str) -> None:
    """Delete Beam's `beam-temp-*` folders under `folder` (a failed write leaves them)."""
    if not fs.is_gcs(folder):
        import glob
        import shutil
        for d in glob.glob(os.path.join(_root(folder), "beam-temp-*")):
            log.info("removing %s, left by a failed write", d)
            shutil.rmtree(d, ignore_errors=True)
        return
    doomed = [relative(folder, p)
              for p in fs.match(fs.join(fs.escape_glob(folder.rstrip("/")), BEAM_TEMP_PATTERN))]
    if doomed:
        log.info("removing %d temporary files of a failed write under %s", len(doomed), folder)
        delete(folder, doomed)


def run_pipeline(p, options, folders):
    """`p.run()`, and wait for it unless it only writes a template. When the run fails (or
    is interrupted), Beam's temporary write folders under `folders` are removed before the
    error goes on, so a failed write leaves no `beam-temp-*` behind. → the PipelineResult."""
    template = fs.builds_template(options)
    try:
        result = p.run()
        if not template:
            result.wait_until_finish()
    except BaseException:
        if not template:
            for folder in sorted(folders):
                try:
                    remove_beam_temp(folder)
                except Exception as e:  # the run's own error is the one to report
                    log.warning("could not remove Beam's temporary files under %s: %s", folder, e)
        raise
    return result


def claim(output: str, command: str, overwrite: bool, continues=None):
    """Make `output` ready for a run of `command`, or refuse with one line.

    Empty (or absent): fine. Holding files: refused, unless `--overwrite`, which deletes
    exactly what the output manifest lists (and the manifest) and leaves anything else; a
    non-empty folder without a manifest was not written by earmark and is refused even
    then. `continues(manifest, present)`: True when this run carries the folder on (an
    incremental label run into its own folder) — then nothing is removed.
    → the manifest of the folder the run continues, or None (a fresh start)."""
    manifest = read_manifest(output)
    if continues is not None and not overwrite and manifest and continues(manifest, ()):
        return manifest  # its own folder: no need to list it
    present = list_files(output)
    if not present:
        return None
    if continues is not None and not overwrite:
        if continues(manifest, present):
            return manifest or {}
        raise UserError(f"--output {output} holds {_describe(manifest, present)}, which "
                        "--incremental cannot continue; pass --overwrite to replace earmark's "
                        "files there, or choose an empty folder")
    if not overwrite:
        raise UserError(f"--output {output} is not empty: it holds {_describe(manifest, present)}; "
                        "pass --overwrite to replace what earmark wrote there, or choose an "
                        "empty folder")
    if manifest is None:
        raise UserError(f"--output {output} holds {len(present)} files earmark did not write "
                        f"(no {MANIFEST_FILE}; e.g. {present[0]}); --overwrite removes only "
                        "earmark's own outputs: choose an empty folder")
    removed = remove_listed(output, manifest, present)
    log.info("%s: --overwrite: removed %d files of the earlier %s run from %s", command,
             len(removed), manifest.get("command", "earmark"), output)
    return None


def _describe(manifest, present) -> str:
    if manifest is None:
        return f"{len(present)} files earmark did not write (e.g. {present[0]})"
    kind = "an incremental" if manifest.get("incremental") else "a"
    state = "" if manifest.get("complete") else " that did not finish"
    return f"{kind} 'earmark {manifest.get('command', '?')}' run{state} ({len(present)} files)"
