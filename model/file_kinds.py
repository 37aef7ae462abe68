"""What a local path is, told without opening it, and the check every file a user names
passes before it is opened. A FIFO blocks the reader forever, a device never ends (a link
to /dev/zero filled memory until the kernel killed earmark), a socket cannot be read, a
folder is not a file; and a regular file larger than its kind can sensibly be is refused
before it is read. Standard library only: `pipelines/fs.py` builds its `FileEntry` on
`classify` (one answer to "what is this path"), and model/ checks its own reads with
`check_regular_file` (model/ never imports pipelines/)."""
import dataclasses
import errno
import os
import stat

from earmark.model.errors import UserError

MB = 1 << 20
MAX_TABLE_BYTES = 256 * MB   # a manifest or an annotation table (CSV / text)
MAX_JSON_BYTES = 16 * MB     # model.json, features.json: a few KB when earmark writes them
MAX_LIST_BYTES = 256 * MB    # stats.json (it lists every shard)
MAX_MODEL_BYTES = 4096 * MB  # model.keras, head.keras, model_int8.tflite: read whole by label


@dataclasses.dataclass(frozen=True)
class PathKind:
    """One local path: its size and update time, or why it cannot be read as a file
    (`problem`: missing, dangling_link, symlink_loop, read_error or not_a_regular_file, a
    dead-letter reason; empty for a regular file) and `detail`, one human line."""
    problem: str = ""
    detail: str = ""
    size_bytes: int = 0
    updated_s: float = 0.0


def classify(path: str) -> PathKind:
    """What the local `path` is (links followed), from `os.stat` alone: never opened."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return PathKind("symlink_loop", "a symbolic link loop")
        if e.errno == errno.ENOENT and os.path.lexists(path):
            return PathKind("dangling_link",
                            f"a symbolic link to {os.readlink(path)!r}, which does not exist")
        if e.errno == errno.ENOENT:
            return PathKind("missing", "no such file")
        return PathKind("read_error", f"{type(e).__name__}: {e}"[:300])
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device file" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "not a regular file")
        if os.path.islink(path):
            kind = f"a symbolic link to {os.path.realpath(path)!r}, {kind}"
        return PathKind("not_a_regular_file", f"{kind}; not opened")
    return PathKind("", "", st.st_size, st.st_mtime)


def megabytes(n: int) -> str:
    """A bound as people read it: `256 MB`, or bytes under one MB."""
    return f"{n / MB:g} MB" if n >= MB else f"{n:,} bytes"


def too_large(size: int, max_bytes: int, what: str) -> str:
    """The detail for a file over its bound: `size` None when it was read past the bound
    (a file whose stat size says less, as /proc's do, or one still growing)."""
    got = f"{size:,} bytes" if size is not None else "more bytes than it reported"
    return f"{got}, over the {megabytes(max_bytes)} limit for {what}; not read"


def check_size(subject: str, size: int, max_bytes: int, what: str, fix: str) -> None:
    """A one-line UserError when `size` (bytes; None: unknown, past the bound) is over
    `max_bytes`; `subject` starts the message (`--manifest /x`)."""
    if max_bytes is not None and (size is None or size > max_bytes):
        raise UserError(f"{subject}: {too_large(size, max_bytes, what)}; {fix}")


def check_regular_file(path: str, subject: str, max_bytes: int = None, what: str = "this file",
                       fix: str = "pass a regular file"):
    """Before opening the local `path` a user named: a one-line UserError (`subject: a FIFO
    (named pipe); not opened; fix`) unless it is a regular file of at most `max_bytes`.
    → its size; None when it does not exist (the caller says what is missing) or for a
    gs:// object (objects are regular by nature; their size comes from their metadata,
    `pipelines/fs.read_user_file`)."""
    if path.startswith("gs://"):
        return None
    found = classify(path)
    if found.problem == "missing":
        return None
    if found.problem:
        raise UserError(f"{subject}: {found.detail}; {fix}")
    check_size(subject, found.size_bytes, max_bytes, what, fix)
    return found.size_bytes


def read_local(path: str, subject: str, max_bytes: int, what: str = "this file",
               fix: str = "pass a regular file") -> bytes:
    """The bytes of the local `path`, checked first (`check_regular_file`) and read no
    further than `max_bytes`: a file that holds more than its size said is refused too.
    FileNotFoundError when it does not exist."""
    if check_regular_file(path, subject, max_bytes, what, fix) is None:
        raise FileNotFoundError(errno.ENOENT, "no such file", path)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    check_size(subject, None if len(data) > max_bytes else len(data), max_bytes, what, fix)
    return data
