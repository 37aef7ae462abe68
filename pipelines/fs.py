"""Small file helpers over Beam's filesystems, so local paths and gs:// work alike."""
import dataclasses
import errno
import json
import os
import posixpath

from apache_beam.io.filesystems import FileSystems

from earmark.model import file_kinds

GLOB_CHARS = "*?["


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


def absolute(path: str) -> str:
    """A gs:// URI as it is; a local path made absolute (Beam workers have other cwds)."""
    import os
    return path if is_gcs(path) else os.path.abspath(path)


def pipeline_options(beam_args, save_main_session: bool):
    """Beam options from the flags the app did not parse; DirectRunner unless told, and the
    same options for the launcher's own file access (gs:// credentials, --no_auth)."""
    from apache_beam.options.pipeline_options import (PipelineOptions, SetupOptions,
                                                      StandardOptions)
    options = PipelineOptions(beam_args)
    options.view_as(SetupOptions).save_main_session = save_main_session
    standard = options.view_as(StandardOptions)
    standard.runner = standard.runner or "DirectRunner"
    check_runner(standard.runner)
    FileSystems.set_options(options)
    _honour_no_auth(options)
    return options


def _honour_no_auth(options) -> None:
    """Under `--no_auth`, Beam's GCS client (2.72) still looks for default credentials,
    four times with back-off (about 21 s), before it connects anonymously: with the flag,
    connect anonymously at once."""
    from apache_beam.internal.gcp import auth
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    cache = getattr(auth, "_Credentials", None)
    if options.view_as(GoogleCloudOptions).no_auth and hasattr(cache, "_credentials_init"):
        with cache._credentials_lock:
            cache._credentials, cache._credentials_init = None, True


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def dirname(path: str) -> str:
    return posixpath.dirname(path) if is_gcs(path) else FileSystems.split(path)[0]


def has_glob(path: str) -> bool:
    return any(c in path for c in GLOB_CHARS)


def match(pattern: str) -> list:
    """Paths matching a glob (empty list when nothing does). For a path that is data, not
    a pattern, use `escape_glob`, `list_files` or `stat_entry`."""
    return sorted(m.path for m in _match_metadata(pattern))


def _match_metadata(pattern: str) -> list:
    try:
        return FileSystems.match([pattern])[0].metadata_list
    except Exception:  # Beam raises when a pattern matches nothing on some filesystems
        return []


def escape_glob(path: str) -> str:
    """A path that matches itself only, whatever `[ * ?` it holds (each becomes `[c]`)."""
    return "".join(f"[{c}]" if c in GLOB_CHARS else c for c in path)


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One listed path: its size and update time, or why it cannot be read as a file
    (`problem`, a dead-letter reason; empty for a readable regular file)."""
    path: str
    size_bytes: int = 0
    updated_s: float = 0.0
    problem: str = ""
    detail: str = ""


def stat_entry(path: str) -> FileEntry:
    """What one path is, without opening it: a FIFO or a device would block or never end;
    a dangling link or a link loop cannot be read (locally: `model.file_kinds.classify`)."""
    if is_gcs(path):
        found = _match_metadata(escape_glob(path))
        if not found:
            return FileEntry(path, problem="missing", detail="no such object")
        return FileEntry(path, found[0].size_in_bytes, found[0].last_updated_in_seconds)
    found = file_kinds.classify(path)
    return FileEntry(path, found.size_bytes, found.updated_s, found.problem, found.detail)


def list_files(root: str) -> list:
    """Every file under the folder `root`, at any depth, sorted by path, as `FileEntry`s.
    Names are data: `root` is never read as a pattern. Local listings include what cannot
    be read (FIFOs, sockets, devices, dangling links, link loops) with the problem named,
    so that every listed path is accounted for; symbolic links to folders are followed
    once (a folder reached twice is not listed again)."""
    root = root.rstrip("/") or "/"
    if is_gcs(root):
        return sorted((FileEntry(m.path, m.size_in_bytes, m.last_updated_in_seconds)
                       for m in _match_metadata(join(escape_glob(root), "**"))),
                      key=lambda e: e.path)
    seen, out = set(), []
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        out += [stat_entry(os.path.join(folder, name)) for name in files]
    return sorted(out, key=lambda e: e.path)


class _FullReads:
    """A seekable stream whose read(n) returns n bytes unless at the end: object-store
    streams may return short reads, which libsndfile would take for the end of the file."""

    def __init__(self, f):
        self._f = f

    def read(self, n=-1):
        if n is None or n < 0:
            return self._f.read()
        parts, got = [], 0
        while got < n:
            part = self._f.read(n - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def seek(self, offset, whence=0):
        return self._f.seek(offset, whence)

    def tell(self):
        return self._f.tell()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_seekable(path: str):
    """Open a file (local or gs://) for random-access reads by audio decoders. One that
    cannot seek to its end (a /proc or /sys file: regular, yet its size is unknown) is an
    OSError here, not inside libsndfile's length callback, where it would be printed as an
    "Exception ignored from cffi callback" traceback and the file taken for empty."""
    f = FileSystems.open(path, compression_type="uncompressed")
    try:
        f.seek(0, os.SEEK_END)
        f.seek(0)
    except OSError as e:
        f.close()
        raise OSError(e.errno, f"cannot seek to its end ({e.strerror}): not a recording "
                      "(a /proc or /sys file?)", path) from None
    return _FullReads(f)


def read_bytes(path: str) -> bytes:
    """A file's bytes, whatever it is: for a path a user named, `read_user_file`."""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def read_user_file(path: str, subject: str, max_bytes: int, what: str = "this file",
                   fix: str = "pass a regular file") -> bytes:
    """The bytes of a file a user named (local or gs://), checked before it is opened: a
    FIFO, a device, a socket, a folder or a broken link is a one-line UserError (`subject:
    a FIFO (named pipe); not opened; fix`), and so is a file over `max_bytes` (a gs://
    object's size from its metadata; a local one is read no further than the bound).
    FileNotFoundError when it does not exist, as `read_bytes` would raise."""
    if not is_gcs(path):
        return file_kinds.read_local(path, subject, max_bytes, what, fix)
    found = stat_entry(path)
    if found.problem:
        raise FileNotFoundError(errno.ENOENT, found.detail, path)
    file_kinds.check_size(subject, found.size_bytes, max_bytes, what, fix)
    return read_bytes(path)


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(data)


def write_json(path: str, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str):
    return json.loads(read_bytes(path).decode())


def makedirs(path: str) -> None:
    """Create a local directory (a no-op on object stores, which have none)."""
    if not is_gcs(path):
        FileSystems.mkdirs(path) if not FileSystems.exists(path) else None


def single_process(options) -> bool:
    """True when the whole pipeline runs in this process (DirectRunner, not multi-process),
    so one process's progress is the run's progress."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    mode = options.view_as(DirectOptions).direct_running_mode
    return runner in ("DirectRunner", "direct") and mode != "multi_processing"


def check_beam_flags(beam_args, prog: str) -> None:
    """Flags the app did not take go to Beam, which would drop unknown ones with a warning:
    a typo (`--treshold`) is a user error here, not a silently ignored setting."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser
    from earmark.model.errors import UserError
    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # as PipelineOptions.get_all_options does
    _, unknown = parser.parse_known_args(list(beam_args))
    flags = [a.split("=", 1)[0] for a in unknown if a.startswith("-")]
    if flags:
        raise UserError(f"{prog}: unknown flag {', '.join(flags)}: neither an earmark flag nor "
                        f"an Apache Beam option (see '{prog} --help')")


def builds_template(options) -> bool:
    """True when the run only writes a Dataflow template (`--template_location`): nothing
    executes, so there are no outputs to wait for or read back."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
    if isinstance(options, (list, tuple)):
        options = PipelineOptions(list(options))
    return bool(options.view_as(GoogleCloudOptions).template_location)


def check_runner(runner) -> None:
    """`--runner NAME` must be a runner Beam knows (any case, `Runner` optional, as Beam
    reads it) or an importable `module.Class`; Beam itself fails deep inside otherwise."""
    from apache_beam.options.pipeline_options import StandardOptions
    from earmark.model.errors import UserError
    if not isinstance(runner, str):
        return  # a PipelineRunner instance set by code, not a flag
    known = {n.lower(): n for n in StandardOptions.KNOWN_RUNNER_NAMES}
    if runner.lower() in known or runner.lower() + "runner" in known:
        return
    if "." in runner:
        import importlib
        module, _, name = runner.rpartition(".")
        try:
            if hasattr(importlib.import_module(module), name):
                return
        except ImportError:
            pass
    raise UserError(f"--runner {runner}: not an Apache Beam runner; choose one of "
                    f"{', '.join(StandardOptions.KNOWN_RUNNER_NAMES)} (or a module.RunnerClass)")


def check_writable_output(path: str, flag: str = "--output") -> None:
    """Before a pipeline starts: a local `path` must be a folder that exists or can be
    created, and a file can be written in it; a gs:// one is checked by the run itself."""
    from earmark.model.errors import UserError
    if is_gcs(path):
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path} is a file, not a folder; give a folder path (it is "
                        "created when missing)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot create it ({e.strerror}); give a folder "
                        "you can write to") from None
    probe = os.path.join(path, f".earmark-write-probe-{os.getpid()}")
    try:
        with open(probe, "wb") as f:
            f.write(b"earmark")
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write there ({e.strerror}); give a folder "
                        "you can write to, or free space on its disk") from None
    finally:
        try:
            os.remove(probe)
        except OSError:
            pass
