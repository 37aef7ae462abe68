"""What earmark writes into an `--output` folder, and that it writes nowhere else.

* `recording_name`: the one rule naming a recording's per-recording outputs (Raven,
  Audacity, scores) inside the output, whatever its path: a key relative to the corpus
  root as it is, anything else (absolute, gs://, another bucket) under `external/`.
* The output manifest `earmark_outputs.json`: the command, run id and every file (relative
  to the output) that earmark wrote there, by name, never by pattern. A run writes it at its
  start with what it is about to write: the files whose names it knows, and `folders` only
  it creates (named with its run id: Beam's temporary folders, an incremental run's
  partition, its journal); and again at its end, `complete`, with exactly what it wrote.
* The run's journal (`JOURNAL_DIR/<run id>/`): names that become known only during the run
  (the shards a Beam sink settles on, `pipelines/sinks.py`) are written there before the
  files themselves, so a run killed at any instant leaves nothing unnamed. (A label run's
  per-recording tables are named in the manifest at its start: the launcher lists the
  corpus.)
* `claim`: the check at the start of `prepare` and `label`. An output holding files is
  refused, unless `--overwrite`, which removes exactly the files the manifest and the
  journals of its runs name (and the manifest) and nothing else; a folder without a
  manifest is not earmark's to clear.

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
JOURNAL_DIR = "earmark_journal"
TEMP_SUFFIX = ".earmark-tmp"  # `atomic_write`'s temporary file: the target's name + this


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


# a file name's longest form on local file systems (ext4, APFS, NTFS: 255 bytes or units)
MAX_NAME_BYTES = 255


def _fallback(name: str, key: str, room_bytes: int) -> str:
    """`name` with its last component cut to fit `room_bytes` and made unique by a digest
    of the key: `night 1/<start of the name>~<8 hex digits of sha256(key)>`."""
    digest = "~" + hashlib.sha256(key.encode()).hexdigest()[:8]
    parent, base = posixpath.split(name)
    keep = max(1, room_bytes - len(digest))
    base = base.encode()[:keep].decode(errors="ignore") + digest
    return posixpath.join(parent, base) if parent else base


def _fold(path: str) -> str:
    """How a file system that ignores case or Unicode normalization (macOS, Windows) sees a
    name: two names with the same fold would be one file there."""
    import unicodedata
    return unicodedata.normalize("NFC", path).casefold()


def unique_names(recordings, files_of) -> dict:
    """{key: name} for the recordings whose plain `recording_name` cannot be used, so that
    every recording's outputs have names of their own wherever the folder is copied:
    names that differ only in case, Unicode normalization or separators (`A.wav`, `a.wav`;
    `a\\b.wav`, `a/b.wav`: the first key in code-point order keeps the plain name), a name
    whose files would be a folder of another's (`c.wav` → `c.wav.selections.txt`, beside a
    folder `c.wav.selections.txt/`), and a component too long for a file system once a
    format's suffix is added. The fallback is `_fallback`'s: stable for a key.
    `recordings`: (key, source) pairs; `files_of(name)`: the per-recording files of a name."""
    names = {key: recording_name(key, source) for key, source in recordings}
    out = {}

    def too_long(name):
        return any(len(part.encode()) > MAX_NAME_BYTES for rel in files_of(name)
                   for part in rel.split("/"))

    for key in sorted(names):
        if too_long(names[key]):
            suffix = max(len(rel.encode()) - len(names[key].encode()) for rel in files_of(names[key]))
            out[key] = _fallback(names[key], key, MAX_NAME_BYTES - suffix)
    taken = {}
    for key in sorted(names):
        name = out.get(key, names[key])
        if _fold(name) in taken:
            out[key] = name = _fallback(name, key, MAX_NAME_BYTES - 40)
        taken[_fold(name)] = key
    files = {key: list(files_of(out.get(key, names[key]))) for key in names}
    folders = {_fold(rel.rsplit("/", i)[0]) for rels in files.values() for rel in rels
               for i in range(1, rel.count("/") + 1)}
    for key in sorted(names):
        if any(_fold(rel) in folders for rel in files[key]):
            out[key] = _fallback(out.get(key, names[key]), key, MAX_NAME_BYTES - 40)
    return out


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


def read_sources_csv(text: str) -> list:
    """(name, source) pairs of a `sources.csv`, in file order."""
    import csv
    import io
    return [(r["name"], r["source"]) for r in csv.DictReader(io.StringIO(text, newline=""))]


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
    tmp = path + TEMP_SUFFIX
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


def begin(output: str, command: str, run_id: str, files, folders=(), incremental=False,
          previous: dict = None) -> dict:
    """Write the manifest of a run about to start: the files it will write and the `folders`
    only it creates (its journal's always), added to `previous`' (an incremental run
    continuing the folder). → the manifest."""
    prev = previous or {}
    manifest = {"command": command, "run_id": run_id, "incremental": bool(incremental),
                "complete": False,
                "files": sorted(set(prev.get("files", ())) | set(files) | {MANIFEST_FILE}),
                "folders": sorted(set(prev.get("folders", ())) | set(folders)
                                  | {journal_folder(run_id)})}
    write_manifest(output, manifest)
    return manifest


def finish(output: str, command: str, run_id: str, files, incremental=False,
           folders=(), previous: dict = None) -> None:
    """Rewrite the manifest at the end of a run: complete, with the files it wrote added to
    those the folder's manifest lists already (`previous`, default the one on disk: an
    incremental folder keeps every run's), and the folders it keeps (incremental runs'
    partitions); then its journal goes."""
    prev = previous if previous is not None else read_manifest(output) or {}
    kept = [f for f in prev.get("folders", ()) if not _transient(f)] if incremental else []
    write_manifest(output, {
        "command": command, "run_id": run_id, "incremental": bool(incremental),
        "complete": True,
        "files": sorted(set(prev.get("files", ())) | set(files) | {MANIFEST_FILE}),
        "folders": sorted(set(kept) | set(folders))})
    delete(output, list_files(fs.join(output, journal_folder(run_id))),
           under=journal_folder(run_id))


def journal_folder(run_id: str) -> str:
    return f"{JOURNAL_DIR}/{run_id}"


def journal(output: str, run_id: str, entry: str, names) -> None:
    """Name files (relative to `output`) before writing them: one journal entry, written
    whole, under the run's journal folder. `entry`: a name unique within the run."""
    fs.write_bytes(fs.join(output, journal_folder(run_id), entry + ".json"),
                   json.dumps(sorted(names)).encode())


def _journaled(output: str, manifest: dict, present) -> set:
    """The names the journals of the manifest's runs hold."""
    names = set()
    for folder in manifest.get("folders", ()):
        if not folder.startswith(JOURNAL_DIR + "/"):
            continue
        for n in present:
            if n.startswith(folder + "/") and n.endswith(".json"):
                try:
                    names.update(json.loads(fs.read_bytes(fs.join(output, n))))
                except (ValueError, OSError):
                    pass  # a journal entry cut short: its files were not written yet
    return names


def delete(output: str, names, under: str = None) -> None:
    """Delete files under `output` (relative names; with `under`, relative to that folder
    of it), then the local folders they leave empty (up to, not including, `output`)."""
    if under:
        names = [f"{under}/{n}" for n in names]
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


def owned(output: str, manifest: dict, present) -> list:
    """The files of `present` (names under `output`) that earmark's runs wrote, by the
    manifest: the files it lists, everything inside the folders it lists (named with a run
    id, made by earmark alone), the files its runs' journals name, and the temporary file
    `atomic_write` leaves beside any of those when killed. Nothing else."""
    listed = set(manifest.get("files", ())) | _journaled(output, manifest, present)
    folders = tuple(f.rstrip("/") + "/" for f in manifest.get("folders", ()))
    return sorted(n for n in present
                  if n in listed or n.startswith(folders) or
                  (n.endswith(TEMP_SUFFIX) and n[:-len(TEMP_SUFFIX)] in listed))


def remove_listed(output: str, manifest: dict, present=None) -> list:
    """Delete what earmark's runs wrote (`owned`), the manifest last. → the names deleted."""
    present = set(list_files(output) if present is None else present)
    doomed = [n for n in owned(output, manifest, present) if n != MANIFEST_FILE]
    delete(output, doomed)
    if MANIFEST_FILE in present:
        delete(output, [MANIFEST_FILE])
    return doomed


def _transient(folder: str) -> bool:
    """A run's journal or Beam temporary folder: gone when the run ends."""
    return folder.startswith(JOURNAL_DIR + "/") or posixpath.basename(folder).startswith("beam-temp-")


def settle_interrupted(output: str, manifest: dict) -> dict:
    """Before a run carries on a folder (incremental): what an interrupted run left is made
    whole. The files its journal named join the listed files (the new run rewrites or keeps
    them); its journal, Beam temporary folders and `atomic_write` temporary files go, so no
    temporary file outlives a resumed run. → the manifest to continue."""
    if manifest.get("complete", True):
        return manifest
    present = list_files(output)
    journaled = _journaled(output, manifest, present) & set(present)
    delete(output, [n for n in owned(output, manifest, present) if n.endswith(TEMP_SUFFIX)])
    for folder in manifest.get("folders", ()):
        if _transient(folder):
            remove_folder(output, folder)
    return dict(manifest, files=sorted(set(manifest.get("files", ())) | journaled),
                folders=[f for f in manifest.get("folders", ()) if not _transient(f)])


def remove_folder(output: str, folder: str) -> list:
    """Delete a folder earmark alone made (relative to `output`, named with a run id) and
    everything in it, empty sub-folders too. → the names deleted."""
    names = list_files(fs.join(output, folder))
    delete(output, names, under=folder)
    path = os.path.join(_root(output), folder)
    if not fs.is_gcs(output) and os.path.isdir(path):
        for d, _, _ in sorted(os.walk(path), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass
    return names


def remove_temp_folders(output: str, folders) -> None:
    """Delete the named folders (relative to `output`) and everything in them: a failed
    run's Beam temporary folders, which only that run wrote into."""
    for folder in sorted(folders):
        if remove_folder(output, folder):
            log.info("removed %s, left by a failed write", folder)


def run_pipeline(p, options, output: str, temp_folders=()):
    """`p.run()`, and wait for it unless it only writes a template. When the run fails (or
    is interrupted), its Beam temporary folders (`temp_folders`, relative to `output`,
    named by `pipelines/sinks.py`) are removed before the error goes on. → the
    PipelineResult."""
    template = fs.builds_template(options)
    try:
        result = p.run()
        if not template:
            result.wait_until_finish()
    except BaseException:
        if not template:
            try:
                remove_temp_folders(output, temp_folders)
            except Exception as e:  # the run's own error is the one to report
                log.warning("could not remove Beam's temporary files under %s: %s", output, e)
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
        return settle_interrupted(output, manifest)  # its own folder: carried on
    present = list_files(output)
    if not present:
        return None
    if continues is not None and not overwrite:
        if continues(manifest, present):
            return settle_interrupted(output, manifest) if manifest else {}
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
