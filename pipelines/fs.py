"""Small file helpers over Beam's filesystems, so local paths and gs:// work alike."""
import json
import posixpath

from apache_beam.io.filesystems import FileSystems

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
    FileSystems.set_options(options)
    return options


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def dirname(path: str) -> str:
    return posixpath.dirname(path) if is_gcs(path) else FileSystems.split(path)[0]


def has_glob(path: str) -> bool:
    return any(c in path for c in GLOB_CHARS)


def match(pattern: str) -> list:
    """Paths matching a glob (empty list when nothing does)."""
    try:
        result = FileSystems.match([pattern])[0]
    except Exception:  # Beam raises when a pattern matches nothing on some filesystems
        return []
    return sorted(m.path for m in result.metadata_list)


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
    """Open a file (local or gs://) for random-access reads by audio decoders."""
    return _FullReads(FileSystems.open(path, compression_type="uncompressed"))


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


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
    from model.errors import UserError
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
