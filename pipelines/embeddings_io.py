"""The embeddings format, in one place: its Parquet writer beside its reader, the shard
names, which shard a recording's rows go to, and `embed.json`.

One row per window, sorted by `file` then `start_s` within a shard:

    file       string          the recording, named as in label's segments.csv
    start_s    double          window start (window k starts at k · hop)
    end_s      double          window end: start + window length, at most the recording's end
    embedding  list<float32>   the frozen base's vector (`model.embedding`)
    scores     list<float32>   with a model: its score per label, in the order of
                               embed.json's `labels` (absent for a base alone)

A recording's rows all go to one shard, `shard_of(file, shards)` (a stable hash of its
name), and every shard is written whole by one writer with row groups of a fixed number of
rows (`rows_per_group`), so a shard's bytes depend on the corpus alone, never on how many
workers ran. The shard count is fixed before a run starts (`default_shards`, or --shards),
so every shard's name is known then: `embeddings-00000-of-00004.parquet`.

`embed.json` (beside the shards) names the base, the dimensions, window and hop, the model
id and labels, the counts and every shard (relative to it): `shard_paths` reads it, and
`blocks` streams a shard row group by row group, so a reader holds one row group at a time.
pyarrow only (Beam's own dependency): no Beam, no TensorFlow.
"""
import hashlib
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from earmark.pipelines import fs

EMBED_FILE = "embed.json"
SHARD_PREFIX = "embeddings"
SHARD_SUFFIX = ".parquet"
FOLDER = "embeddings"          # `earmark label --formats embeddings` writes under OUTPUT/embeddings/
COLUMNS = ("file", "start_s", "end_s", "embedding", "scores")
FILES_PER_SHARD = 200          # default: one shard per 200 recordings (at least one)
MAX_DEFAULT_SHARDS = 1000
ROW_GROUP_BYTES = 16 << 20     # about 16 MiB of vectors per row group
METADATA_KEY = b"earmark"


def shard_name(index: int, count: int) -> str:
    return f"{SHARD_PREFIX}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def shard_names(count: int) -> list:
    return [shard_name(i, count) for i in range(count)]


def shard_of(file: str, count: int) -> int:
    """The shard a recording's rows go to: a stable hash of its name."""
    return int(hashlib.sha256(file.encode("utf-8")).hexdigest()[:12], 16) % count


def default_shards(files: int) -> int:
    return max(1, min(MAX_DEFAULT_SHARDS, math.ceil(files / FILES_PER_SHARD)))


def rows_per_group(dim: int) -> int:
    """Rows per row group: about `ROW_GROUP_BYTES` of vectors, a multiple of 256."""
    return max(256, (ROW_GROUP_BYTES // (4 * max(1, dim))) // 256 * 256)


def schema(dim: int, labels, facts: dict = None) -> pa.Schema:
    fields = [pa.field("file", pa.string(), nullable=False),
              pa.field("start_s", pa.float64(), nullable=False),
              pa.field("end_s", pa.float64(), nullable=False),
              pa.field("embedding", pa.list_(pa.float32()), nullable=False)]
    if labels:
        fields.append(pa.field("scores", pa.list_(pa.float32()), nullable=False))
    meta = {"embedding_dim": int(dim), "labels": list(labels or ()), **(facts or {})}
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


def _list_column(values: np.ndarray) -> pa.ListArray:
    values = np.ascontiguousarray(values, np.float32)
    n, width = values.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))


class ShardWriter:
    """Writes one shard: blocks of rows, given in sorted order, into row groups of exactly
    `rows_per_group(dim)` rows (the last one shorter), so the bytes depend on the rows alone.
    `sink`: a writable binary file object."""

    def __init__(self, sink, dim: int, labels=(), facts: dict = None):
        self.dim, self.labels = int(dim), list(labels or ())
        self._schema = schema(dim, self.labels, facts)
        self._rows = rows_per_group(dim)
        self._writer = pq.ParquetWriter(
            sink, self._schema, compression={"file": "zstd", "start_s": "zstd", "end_s": "zstd",
                                             "embedding": "none", "scores": "none"},
            use_dictionary=["file"], write_statistics=["file", "start_s", "end_s"],
            version="2.6")
        self._pending = []   # blocks not yet written, fewer than self._rows rows in all
        self._pending_rows = 0
        self.rows = 0

    def write(self, files, starts, ends, embeddings, scores=None) -> None:
        """One block of rows (sequences of equal length), after every block written before."""
        embeddings = np.asarray(embeddings, np.float32).reshape(len(files), self.dim)
        block = {"file": list(files), "start_s": np.asarray(starts, np.float64),
                 "end_s": np.asarray(ends, np.float64), "embedding": embeddings}
        if self.labels:
            block["scores"] = np.asarray(scores, np.float32).reshape(len(files), len(self.labels))
        if not len(files):
            return
        self._pending.append(block)
        self._pending_rows += len(files)
        while self._pending_rows >= self._rows:
            self._flush(self._rows)

    def _flush(self, n: int) -> None:
        merged = {k: (sum((b[k] for b in self._pending), []) if k == "file"
                      else np.concatenate([b[k] for b in self._pending]))
                  for k in self._pending[0]}
        head = {k: v[:n] for k, v in merged.items()}
        rest = {k: v[n:] for k, v in merged.items()}
        columns = [pa.array(head["file"], pa.string()), pa.array(head["start_s"]),
                   pa.array(head["end_s"]), _list_column(head["embedding"])]
        if self.labels:
            columns.append(_list_column(head["scores"]))
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self._schema),
                                 row_group_size=n)
        self.rows += n
        self._pending_rows -= n
        self._pending = [rest] if self._pending_rows else []

    def close(self) -> None:
        if self._pending_rows:
            self._flush(self._pending_rows)
        self._writer.close()


def write_shard(path: str, rows, dim: int, labels=(), facts: dict = None) -> int:
    """Write a whole shard at `path` from `rows`, an iterable of blocks (files, starts, ends,
    embeddings, scores) in sorted order. Locally through a temporary file beside it and a
    rename, so it is never seen half-written; a gs:// shard is written locally, then copied
    up in one object write. → rows written."""
    import os
    import shutil
    import tempfile
    from earmark.pipelines import outputs
    if fs.is_gcs(path):
        with tempfile.TemporaryFile() as local:
            n = _write(local, rows, dim, labels, facts)
            local.seek(0)
            with fs.FileSystems.create(path, compression_type="uncompressed") as sink:
                shutil.copyfileobj(local, sink, 8 << 20)
        return n
    os.makedirs(os.path.dirname(path), exist_ok=True)
    target = path + outputs.TEMP_SUFFIX
    with open(target, "wb") as sink:
        n = _write(sink, rows, dim, labels, facts)
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(target, path)
    return n


def _write(sink, rows, dim, labels, facts) -> int:
    writer = ShardWriter(sink, dim, labels, facts)
    for block in rows:
        writer.write(*block)
    writer.close()
    return writer.rows


# --- reading ---------------------------------------------------------------------------

class Block:
    """One row group: `embedding` [n, dim] float32 (numpy), `scores` [n, labels] or None,
    and the `file`, `start_s`, `end_s` columns (arrow: converted only where asked)."""

    def __init__(self, table, dim: int):
        self.table = table     # a pyarrow Table or RecordBatch
        names = table.schema.names
        self.embedding = _matrix(table.column("embedding"), dim) if "embedding" in names else None
        self.scores = _matrix(table.column("scores"), None) if "scores" in names else None

    def __len__(self):
        return self.table.num_rows

    def rows(self, index) -> list:
        """(file, start_s, end_s) of the rows at `index`."""
        taken = self.table.select(["file", "start_s", "end_s"]).take(pa.array(index, pa.int64()))
        return list(zip(taken.column(0).to_pylist(), taken.column(1).to_pylist(),
                        taken.column(2).to_pylist()))


def _matrix(column, width) -> np.ndarray:
    """A list<float32> column → [rows, width] float32 (respecting offsets and slices)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    if width is None:
        width = len(flat) // n if n else 0
    return np.asarray(flat, np.float32).reshape(n, width)


def open_shard(path: str) -> pq.ParquetFile:
    """A shard for reading: a local one memory-mapped, a gs:// one through Beam's file
    system (random access: only the row groups read are fetched)."""
    if fs.is_gcs(path):
        return pq.ParquetFile(fs.FileSystems.open(path, compression_type="uncompressed"))
    return pq.ParquetFile(path, memory_map=True)


def shard_facts(path: str) -> dict:
    """The facts a shard's schema carries (embedding_dim, labels, ...)."""
    meta = open_shard(path).schema_arrow.metadata or {}
    return json.loads(meta.get(METADATA_KEY, b"{}"))


def blocks(path: str, columns=None, row_groups=None):
    """The shard's row groups, one `Block` at a time (all of them, or the indices given).
    Read as record batches of a row group each (`iter_batches`: about 1.5 times as fast
    as `read_row_group` on list<float32> columns, measured)."""
    pf = open_shard(path)
    dim = json.loads((pf.schema_arrow.metadata or {}).get(METADATA_KEY, b"{}")).get("embedding_dim")
    wanted = [c for c in (columns or COLUMNS) if c in pf.schema_arrow.names]
    groups = list(range(pf.num_row_groups) if row_groups is None else row_groups)
    if not groups:
        return
    size = max(pf.metadata.row_group(i).num_rows for i in groups)
    for batch in pf.iter_batches(batch_size=max(1, size), row_groups=groups, columns=wanted,
                                 use_threads=False):
        yield Block(batch, dim)


def row_groups(path: str) -> int:
    return open_shard(path).num_row_groups


def read_summary(folder: str) -> dict:
    """embed.json of an embeddings folder (an `earmark embed` output, or a label output's
    `embeddings/`), or a one-line UserError."""
    from earmark.model.errors import UserError
    path = fs.join(folder, EMBED_FILE)
    try:
        return json.loads(fs.read_bytes(path))
    except Exception:
        raise UserError(f"--embeddings {folder}: no {EMBED_FILE} there; pass the --output of "
                        "'earmark embed' (or a label output's embeddings/ folder) of a run "
                        "that finished") from None


def shard_paths(folder: str, summary: dict = None) -> list:
    """Every shard of an embeddings folder, as its embed.json lists them."""
    summary = summary or read_summary(folder)
    return [fs.join(folder, *rel.split("/")) for rel in summary.get("shards", [])]


def read_rows(folder: str) -> list:
    """Every row of an embeddings folder as (file, start_s, end_s, embedding, scores or
    None), in shard order (tests and small corpora; `blocks` streams)."""
    return [row for path in shard_paths(folder) for row in read_rows_of(path)]


def read_rows_of(path: str) -> list:
    """Every row of one shard, as `read_rows`."""
    out = []
    for block in blocks(path):
        for i, (f, s, e) in enumerate(block.rows(range(len(block)))):
            out.append((f, s, e, block.embedding[i],
                        None if block.scores is None else block.scores[i]))
    return out
