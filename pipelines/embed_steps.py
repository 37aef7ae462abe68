"""The steps that write window embeddings to Parquet shards, shared by `earmark embed` and
`earmark label --formats embeddings` (`pipelines/embeddings_io.py` is the format):

    CheckRecordings  (embed) per recording: every window embedded? → its facts, or a
                     dead-letter record (label's MakeSegments decides this for label)
    WriteEmbeddings  rows (file, window index, embedding, scores) → SpillRows (each bundle
                     appends its rows, per shard, to spill files in a temporary folder:
                     no vector goes through a shuffle, so memory stays bounded whatever the
                     corpus) → GroupPerShard (the spill files' names, and one marker per
                     shard so that every shard is written, empty or not) → WriteShards
                     (per shard: the spill files' indexes sorted by file then window,
                     the rows of recordings that failed left out, the vectors gathered
                     from the spill files in that order into row groups of a fixed size)

A shard's bytes thus depend on the rows alone, never on the bundles or the worker count.
"""
import json
import os
import shutil
import struct
import tempfile
import uuid

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from earmark.model import scoring
from earmark.pipelines import embeddings_io, fs
from earmark.pipelines.label_steps import DEAD_LETTER, _dead

SPILL_FLUSH_BYTES = 64 << 20   # a bundle's rows for one shard are written out at this size
_HEADER = struct.Struct("<Q")


def spill_folder(run_id: str) -> str:
    """The temporary folder of a run's spill files, beside its shards (a `beam-temp-`
    name: removed by the run, or by the next one when the run was killed)."""
    return f"beam-temp-embeddings-{run_id}"


def write_spill(path: str, rows: list, width: int) -> None:
    """Rows (file, window index, embedding, scores or None) → one spill file: an 8-byte
    header length, a JSON index (files, [file number, window index] per row), then the
    vectors (embedding and scores side by side) as float32 [rows, width]."""
    files = sorted({r[0] for r in rows})
    number = {f: i for i, f in enumerate(files)}
    index = json.dumps({"files": files, "rows": [[number[r[0]], int(r[1])] for r in rows],
                        "width": width}).encode()
    data = np.empty((len(rows), width), np.float32)
    for i, r in enumerate(rows):
        emb = np.asarray(r[2], np.float32)
        data[i, :len(emb)] = emb
        if r[3] is not None:
            data[i, len(emb):] = np.asarray(r[3], np.float32)
    fs.write_bytes(path, _HEADER.pack(len(index)) + index + data.tobytes())


def read_spill_index(path: str):
    """→ (index dict, offset of the vectors) of a local spill file."""
    with open(path, "rb") as f:
        (n,) = _HEADER.unpack(f.read(_HEADER.size))
        return json.loads(f.read(n)), _HEADER.size + n


class SpillRows(beam.DoFn):
    """Rows → spill files under `folder`, one per shard a bundle's rows go to (more when
    they outgrow `SPILL_FLUSH_BYTES`) → (shard, spill file path)."""

    def __init__(self, folder: str, shards: int, width: int):
        self._folder, self._shards, self._width = folder, shards, width

    def start_bundle(self):
        self._rows, self._bytes = {}, {}

    def _flush(self, shard):
        path = fs.join(self._folder, f"spill-{shard:05d}-{uuid.uuid4().hex}.bin")
        write_spill(path, self._rows.pop(shard), self._width)
        self._bytes.pop(shard, None)
        return shard, path

    def process(self, row):
        shard = embeddings_io.shard_of(row[0], self._shards)
        self._rows.setdefault(shard, []).append(row)
        self._bytes[shard] = self._bytes.get(shard, 0) + 4 * self._width
        if self._bytes[shard] >= SPILL_FLUSH_BYTES:
            yield self._flush(shard)

    def finish_bundle(self):
        for shard in sorted(self._rows):
            yield WindowedValue(self._flush(shard), MIN_TIMESTAMP, [GlobalWindow()])


class WriteShards(beam.DoFn):
    """(shard, spill files and markers) → the shard, written whole → its name (relative to
    the output). `recordings`: {file: facts} of the recordings that succeeded (side input):
    only their rows are written, each row's end capped at its recording's duration."""

    def __init__(self, folder: str, output: str, shards: int, dim: int, labels, hop_s: float,
                 window_s: float, facts: dict):
        self._folder, self._output, self._shards = folder, output, shards
        self._dim, self._labels = dim, list(labels or ())
        self._hop_s, self._window_s, self._facts = hop_s, window_s, facts

    def process(self, element, recordings):
        from earmark.pipelines import outputs
        shard, values = element
        spills = sorted(v for v in values if v)
        path = fs.join(self._folder, embeddings_io.shard_name(shard, self._shards))
        with tempfile.TemporaryDirectory(prefix="earmark-shard-") as tmp:
            rows = self._sorted_rows(spills, recordings, tmp)
            n = embeddings_io.write_shard(path, rows, self._dim, self._labels, self._facts)
        beam.metrics.Metrics.counter("embed", "rows_written").inc(n)
        yield outputs.relative(self._output, path)

    def _sorted_rows(self, spills, recordings, tmp):
        """The spill files' rows of the recordings that succeeded, in (file, window) order,
        as blocks for `embeddings_io.write_shard`."""
        index, maps = [], []
        for k, spill in enumerate(spills):
            local = spill
            if fs.is_gcs(spill):
                local = os.path.join(tmp, f"{k}.bin")
                with fs.FileSystems.open(spill, compression_type="uncompressed") as src, \
                        open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst, 8 << 20)
            head, offset = read_spill_index(local)
            files, rows, width = head["files"], head["rows"], head["width"]
            if rows:
                maps.append(np.memmap(local, np.float32, "r", offset, (len(rows), width)))
            else:
                maps.append(None)
            index += [(files[f], w, k, r) for r, (f, w) in enumerate(rows) if files[f] in recordings]
        index.sort()
        # a window twice (a retried bundle's rows): the first copy only
        index = [row for i, row in enumerate(index) if i == 0 or row[:2] != index[i - 1][:2]]
        step = embeddings_io.rows_per_group(self._dim)
        for i in range(0, len(index), step):
            part = index[i:i + step]
            files = [p[0] for p in part]
            windows = np.array([p[1] for p in part], np.int64)
            which = np.array([p[2] for p in part], np.int64)
            at = np.array([p[3] for p in part], np.int64)
            vectors = np.empty((len(part), self._dim + len(self._labels)), np.float32)
            for k in np.unique(which):
                mask = which == k
                vectors[mask] = maps[k][at[mask]]
            starts = np.round(windows * self._hop_s, 6)
            durations = np.array([recordings[f]["duration_s"] for f in files], np.float64)
            ends = np.round(np.minimum(starts + self._window_s, durations), 6)
            yield (files, starts, ends, vectors[:, :self._dim],
                   vectors[:, self._dim:] if self._labels else None)


class WriteEmbeddings(beam.PTransform):
    """Rows (file, window index, embedding, scores) and the recordings that succeeded
    ({file: facts with duration_s}, a PCollection of pairs) → every shard `0..shards-1` of
    `folder` written (names relative to `output`, one element per shard). Spill files go
    to `folder/spill_folder(run_id)`, which `FinishEmbeddings`-style last steps remove."""

    def __init__(self, folder: str, output: str, run_id: str, shards: int, dim: int, labels,
                 hop_s: float, window_s: float, facts: dict):
        super().__init__()
        self._folder, self._output, self._run_id, self._shards = folder, output, run_id, shards
        self._dim, self._labels, self._hop_s, self._window_s = dim, list(labels or ()), hop_s, window_s
        self._facts = facts

    def expand(self, pcolls):
        rows, recordings = pcolls["rows"], pcolls["recordings"]
        p = rows.pipeline
        spill = fs.join(self._folder, spill_folder(self._run_id))
        spilled = rows | "SpillRows" >> beam.ParDo(
            SpillRows(spill, self._shards, self._dim + len(self._labels)))
        markers = p | "EveryShard" >> beam.Create([(i, None) for i in range(self._shards)])
        return ((spilled, markers) | "SpillsAndShards" >> beam.Flatten()
                | "GroupPerShard" >> beam.GroupByKey()
                | "WriteShards" >> beam.ParDo(
                    WriteShards(self._folder, self._output, self._shards, self._dim, self._labels,
                                self._hop_s, self._window_s, self._facts),
                    beam.pvalue.AsDict(recordings)))


class CheckRecording(beam.DoFn):
    """One recording's FileInfo, embedded window indices and failures → (file, facts:
    path, duration_s, windows) when every window was embedded, else a dead-letter record."""

    def process(self, element):
        key, grouped = element
        infos, windows, failures = grouped["info"], grouped["windows"], grouped["failed"]
        info = infos[0]
        if failures:
            yield _dead(info.path, key, "inference" if "inference" in failures[0] else "decode",
                        failures[0].split(":")[0], "; ".join(sorted(set(failures)))[:300])
            return
        if scoring.assemble_scores([(w, None) for w in windows], info.num_windows, 0) is None:
            yield _dead(info.path, key, "inference", "missing_windows",
                        f"{len(windows)} of {info.num_windows} windows embedded")
            return
        beam.metrics.Metrics.counter("embed", "files_embedded").inc()
        yield key, {"path": info.path, "duration_s": info.duration_s, "windows": info.num_windows}


class CheckRecordings(beam.PTransform):
    """{"info", "rows", "chunk_failed", "inference_failed"} → {"recordings": (file, facts)
    of each recording embedded whole, DEAD_LETTER: one record per failed file}."""

    def expand(self, keyed):
        failed = (keyed["chunk_failed"], keyed["inference_failed"]) | "Failures" >> beam.Flatten()
        windows = keyed["rows"] | "WindowIndex" >> beam.Map(lambda r: (r[0], r[1]))
        checked = ({"info": keyed["info"], "windows": windows, "failed": failed}
                   | "GroupPerRecording" >> beam.CoGroupByKey()
                   | "CheckRecording" >> beam.ParDo(CheckRecording())
                   .with_outputs(DEAD_LETTER, main="recordings"))
        return {"recordings": checked.recordings, DEAD_LETTER: checked[DEAD_LETTER]}
