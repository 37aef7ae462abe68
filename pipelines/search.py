"""`earmark search`: examples → the windows of an embedded corpus most like them.

    queries (audio files, spans FILE@START-END, Raven / Audacity / CSV tables)
      → their windows, embedded as embed.json says (the same model or base, windows and
        hop; `model.embedding`) → one unit vector per query
      → exact cosine similarity against every window of every shard, a row group at a
        time, keeping a running top K per query (memory: one row group, whatever the
        corpus); or, with --runner (DataflowRunner, DirectRunner...), the same search
        as a Beam job: a top K per row group, combined per query by beam.combiners.Top
      → results.csv, queries.csv, raven/<recording>.selections.txt, search.json,
        earmark_outputs.json (the command then adds review.html: `earmark/search_page.py`)

A query's windows lie inside it: from its start every hop while they fit, and one more
ending at its end; a span shorter than one window is the window centred on it (inside the
recording), a whole file shorter than one is repeated to fill it. The query vector is the
mean of its windows' unit vectors. Ties in
similarity are ordered by file, then start, so the local and the Beam search return the
same rows.
"""
import dataclasses
import functools
import logging
import os
import posixpath
import re
import time

import numpy as np

from earmark.model import annotations, audio
from earmark.model.errors import UserError
from earmark.model.segments import Segment
from earmark.pipelines import embeddings_io, fs, label_formats, local_runner, outputs
from earmark.pipelines.search_flags import build_arg_parser

log = logging.getLogger("earmark.search")

RESULTS_CSV = "results.csv"
QUERIES_CSV = "queries.csv"
SEARCH_FILE = "search.json"
RESULT_COLUMNS = ("rank", "query", "file", "start_s", "end_s", "similarity")
TABLE_EXTENSIONS = (".txt", ".csv")
MAX_TABLE_BYTES = 64 << 20
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
SPAN = re.compile(rf"^(.+)@{_NUMBER}-{_NUMBER}$", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Query:
    name: str                 # as results.csv and the tables show it
    path: str                 # the recording (absolute, or gs://)
    start_s: float = None     # None: the whole file
    end_s: float = None
    label: str = ""           # a table row's label, else --label
    source: str = ""          # the --query it came from


# --- queries -------------------------------------------------------------------------------

def _path(text: str) -> str:
    return text if fs.is_gcs(text) else os.path.abspath(text)


def _is_file(path: str) -> bool:
    return outputs.exists(path)


def parse_query(text: str, audio_root: str = None, label_column: str = None) -> list:
    """One --query → its `Query`s. A path that exists is the file it names (so a name holding
    `@` works as it is); else FILE@START-END whose FILE exists is a span of it. An audio
    file is one query; a table (.txt: Raven or Audacity, .csv) is one query a selection."""
    path = _path(text)
    if _is_file(path):
        ext = os.path.splitext(path)[1].lower()
        if ext in audio.AUDIO_EXTENSIONS:
            return [Query(text, path, source=text)]
        if ext in TABLE_EXTENSIONS:
            return table_queries(text, path, audio_root, label_column)
        raise UserError(f"--query {text}: neither audio ({', '.join(audio.AUDIO_EXTENSIONS)}) "
                        "nor a table (.txt: Raven or Audacity; .csv)")
    m = SPAN.match(text)
    if m and _is_file(_path(m.group(1))):
        start, end = float(m.group(2)), float(m.group(3))
        if not end > start:
            raise UserError(f"--query {text}: the span must end after it starts "
                            f"(FILE@START-END, seconds, e.g. night.flac@612.5-615.0)")
        return [Query(text, _path(m.group(1)), start, end, source=text)]
    raise UserError(f"--query {text}: no such file (a span of a recording is FILE@START-END "
                    "in seconds, e.g. night.flac@612.5-615.0)")


def table_queries(text: str, path: str, audio_root: str = None, label_column: str = None) -> list:
    """A Raven selection table, an Audacity label track or a CSV → one `Query` a selection;
    a row's recording is the file it names, else the one the table is named after, relative
    to --audio-root or the table's folder."""
    try:
        data = fs.read_user_file(path, f"--query {text}", MAX_TABLE_BYTES, "a table")
    except FileNotFoundError:
        raise UserError(f"--query {text}: no such file") from None
    name = posixpath.basename(path.replace("\\", "/"))
    tries = [label_column] if label_column else ["Annotation", "Label"]
    if name.lower().endswith(".csv"):
        tries = [label_column or "label"]
    for column in tries:
        table = annotations.read_table(name, data, column)
        if table.rows or not any(b.reason == "no_label_column" for b in table.bad):
            break
    if not table.rows:
        why = "; ".join(f"line {b.line}: {b.reason} {b.detail}".strip() for b in table.bad[:3])
        raise UserError(f"--query {text}: no selection could be read ({why or 'it is empty'})")
    for bad in table.bad[:5]:
        log.warning("search: %s line %d not used: %s %s", text, bad.line, bad.reason, bad.detail)
    root = _path(audio_root) if audio_root else fs.dirname(path)
    out = []
    for row in table.rows:
        recording = row.file or annotations.table_recording_name(name)
        where = _recording_path(recording, root)
        if where is None:
            raise UserError(f"--query {text}: line {row.line} names {recording}, which is not in "
                            f"{root}; pass --audio-root with the recordings' folder")
        out.append(Query(f"{recording}@{row.start_s:.3f}-{row.end_s:.3f}", where, row.start_s,
                         row.end_s, row.label, text))
    return out


def _recording_path(recording: str, root: str):
    """The audio file a table row names (absolute, or relative to `root`); a name without an
    audio extension (an Audacity track `night1.txt` names `night1`) is tried with each.
    None when there is none."""
    path = recording if fs.is_gcs(recording) or os.path.isabs(recording) else \
        fs.join(root, *recording.replace("\\", "/").split("/"))
    if _is_file(path):
        return path
    if os.path.splitext(path)[1].lower() not in audio.AUDIO_EXTENSIONS:
        for ext in audio.AUDIO_EXTENSIONS:
            for candidate in (path + ext, path + ext.upper()):
                if _is_file(candidate):
                    return candidate
    return None


def query_windows(query: Query, config) -> np.ndarray:
    """A query's windows at the embeddings' rate, length and hop ([n, window_samples]),
    all inside the query: from its start every hop while they fit, and one more ending at
    its end when those do not reach it. A span shorter than a window: the window centred
    on it (inside the recording); a whole file shorter than a window: the file repeated
    to fill one (a 1-s clip, three times in a 3-s window), never padded with silence."""
    from earmark.pipelines import chunks
    rate, size, hop = config.sample_rate_hz, config.patch_samples, config.patch_hop_samples
    try:
        with fs.open_seekable(query.path) as f:
            info = chunks.file_info(f, query.path, rate, size, hop)
        samples = audio.resampled_length(info.native_frames, info.native_rate_hz, rate)
        duration = samples / rate
        start = 0.0 if query.start_s is None else query.start_s
        end = duration if query.end_s is None else min(query.end_s, duration)
        if start >= duration:
            raise UserError(f"--query {query.source}: starts at {start:g} s, after the end of "
                            f"{query.path} ({info.duration_s:.3f} s)")
        first, last = int(round(start * rate)), int(round(end * rate))

        def read(at, n):
            with fs.open_seekable(query.path) as f:
                return chunks.read_windows_at(f, info, at, n, rate, size, hop,
                                              config.resample_quality)
        if last - first >= size:
            n = 1 + (last - first - size) // hop
            windows = read(first, n)
            if first + (n - 1) * hop + size < last:
                windows = np.concatenate([windows, read(last - size, 1)])
            return windows
        if samples < size and query.start_s is None:
            whole = read(0, 1)[0][:samples]
            return np.tile(whole, -(-size // max(1, samples)))[None, :size]
        centre = (first + last) // 2
        return read(min(max(0, centre - size // 2), max(0, samples - size)), 1)
    except audio.AudioError as e:
        raise UserError(f"--query {query.source}: {query.path} cannot be decoded ({e})") from None


def load_embedder(summary: dict, model_override: str = None):
    """The embedder embed.json names: its model (checked by id) or its base."""
    from earmark.model import embedding
    if summary.get("model_id"):
        from earmark.pipelines import label
        from earmark.pipelines.model_cache import local_model_dir
        model_dir = fs.absolute(model_override or summary.get("model") or "")
        flag = "--model" if model_override else "the model embed.json names"
        try:
            meta = label._model_meta(model_dir)
        except UserError as e:
            raise UserError(f"{flag} ({model_dir}): {e}; pass --model with the model the "
                            "embeddings were made with") from None
        if meta["model_id"] != summary["model_id"]:
            raise UserError(f"{flag} ({model_dir}) is model {meta['model_id']}, but the "
                            f"embeddings were made with model {summary['model_id']}; pass "
                            "--model with that one")
        precision = (summary.get("numeric_precision") or {}).get("requested", "float32")
        return embedding.for_model(local_model_dir(model_dir), precision)
    return embedding.for_base(summary["base"])


def embed_queries(queries, summary: dict, embedder) -> tuple:
    """→ (unit query vectors [queries, dim] float32, windows per query)."""
    from earmark.model import embedding
    from earmark.model.features import FeatureConfig
    config = FeatureConfig.from_dict(summary["feature_config"])
    batch = int(summary.get("batch_size") or 128)
    vectors, counts = [], []
    for q in queries:
        windows = query_windows(q, config)
        parts = [embedder.run(windows[i:i + batch], pad_to=batch)[0]
                 for i in range(0, len(windows), batch)]
        vectors.append(embedding.query_vector(np.concatenate(parts)))
        counts.append(len(windows))
    dim = int(summary["embedding_dim"])
    if vectors and len(vectors[0]) != dim:
        raise UserError(f"the query vectors have {len(vectors[0])} dimensions, the embeddings "
                        f"{dim}: not the same model")
    return np.stack(vectors).astype(np.float32), counts


# --- the search ----------------------------------------------------------------------------

def _order(c) -> tuple:
    """A candidate (similarity, file, start_s, end_s): best first, ties by file then start."""
    return (-c[0], c[1], c[2])


@functools.total_ordering
class _Descending:
    """Orders the other way round: the largest `Top` key is the smallest file, start."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return self.value == other.value

    def __lt__(self, other):
        return self.value > other.value

    def __reduce__(self):
        return _Descending, (self.value,)


def top_key(c) -> tuple:
    """`beam.combiners.Top`'s key of a candidate: its largest is `_order`'s first."""
    return (c[0], _Descending(c[1]), -c[2])


def block_candidates(block, queries: np.ndarray, k: int, floors=None) -> list:
    """One row group → per query, its best rows (at least the top k, ties at the k-th
    included; none below `floors[j]`, the running k-th best) as candidates (similarity,
    file, start_s, end_s)."""
    e = block.embedding
    norms = np.sqrt(np.einsum("ij,ij->i", e, e, dtype=np.float32))
    sims = (e @ queries.T) / np.where(norms > 0, norms, np.float32(1))[:, None]
    out = []
    for j in range(queries.shape[0]):
        s = sims[:, j]
        if len(s) > k:
            idx = np.flatnonzero(s >= np.partition(s, len(s) - k)[len(s) - k])
        else:
            idx = np.arange(len(s))
        if floors is not None and floors[j] is not None:
            idx = idx[s[idx] >= floors[j]]
        out.append([(float(s[i]), f, st, en) for i, (f, st, en) in zip(idx, block.rows(idx))])
    return out


class RunningTop:
    """The best k candidates per query so far."""

    def __init__(self, queries: int, k: int):
        self.k, self.best = k, [[] for _ in range(queries)]

    def floors(self) -> list:
        return [b[-1][0] if len(b) >= self.k else None for b in self.best]

    def add(self, candidates: list) -> None:
        for j, found in enumerate(candidates):
            if found:
                self.best[j] = sorted(self.best[j] + found, key=_order)[:self.k]


def _unit_candidates(unit, queries, k, floors):
    """(shard, row group) → (its rows, its candidates per query); runs in a reader thread."""
    path, index = unit
    found, rows = [[] for _ in range(len(queries))], 0
    for block in embeddings_io.blocks(path, ["file", "start_s", "end_s", "embedding"], [index]):
        rows += len(block)
        for j, c in enumerate(block_candidates(block, queries, k, floors)):
            found[j] += c
    return rows, found


def search_local(shards, queries: np.ndarray, k: int, threads: int = None) -> tuple:
    """Exact search, streaming: → (per query its best k candidates, windows searched).
    Row groups are read and scored by `threads` threads (default: the CPUs, at most 4;
    Parquet decoding and the products release the GIL), at most two row groups a thread
    in memory at once; results are merged in row-group order, and ties are ordered, so
    the result does not depend on the thread count."""
    from concurrent.futures import ThreadPoolExecutor
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    units = [u for path in shards for u in _row_groups(path)]
    top, windows, pending = RunningTop(len(queries), k), 0, []
    with ThreadPoolExecutor(threads, thread_name_prefix="earmark-search") as pool:
        for unit in units:
            pending.append(pool.submit(_unit_candidates, unit, queries, k, top.floors()))
            if len(pending) >= 2 * threads:
                rows, found = pending.pop(0).result()
                windows += rows
                top.add(found)
        for future in pending:
            rows, found = future.result()
            windows += rows
            top.add(found)
    return top.best, windows


def _row_groups(path):
    return [(path, i) for i in range(embeddings_io.row_groups(path))]


def _search_unit(unit, queries, k):
    """(shard, row group) → (query index, candidate) of its best k per query."""
    path, index = unit
    for block in embeddings_io.blocks(path, ["file", "start_s", "end_s", "embedding"], [index]):
        for j, found in enumerate(block_candidates(block, queries, k)):
            for c in sorted(found, key=_order)[:k]:
                yield j, c


def build_search_pipeline(p, shards, queries: np.ndarray, k: int, finish):
    """The search as a Beam job: shards → their row groups → Reshuffle → top k per row
    group and query → beam.combiners.Top per query → `finish` writes the outputs."""
    import apache_beam as beam
    tops = (p | "Shards" >> beam.Create(list(shards))
            | "RowGroups" >> beam.FlatMap(_row_groups)
            | "Spread" >> beam.Reshuffle()
            | "SearchRowGroups" >> beam.FlatMap(_search_unit, queries, k)
            | "TopPerQuery" >> beam.combiners.Top.PerKey(k, key=top_key))
    return (p | "Once" >> beam.Create([None])
            | "WriteResults" >> beam.Map(lambda _, found: finish(_per_query(found, len(queries))),
                                         beam.pvalue.AsList(tops)))


def _per_query(found, n) -> list:
    best = [[] for _ in range(n)]
    for j, cands in found:
        best[j] = sorted(cands, key=_order)
    return best


# --- outputs -------------------------------------------------------------------------------

@dataclasses.dataclass
class WriteOutputs:
    """results.csv, queries.csv, the Raven tables, search.json and the output manifest,
    from the best candidates per query (in the launcher, or as a Beam job's last step)."""
    output: str
    run_id: str
    queries: list             # Query
    windows_per_query: list
    summary: dict
    low_hz: float
    high_hz: float
    started_unix_s: float

    def __call__(self, best: list) -> dict:
        rows, hits = [], {}
        for q, found in zip(self.queries, best):
            for rank, (sim, file, start, end) in enumerate(found, start=1):
                rows.append([str(rank), q.name, file, f"{start:.3f}", f"{end:.3f}", f"{sim:.6f}"])
                hits.setdefault(file, []).append(Segment(start, end, q.name, sim, file))
        files = {RESULTS_CSV: label_formats._csv_text([RESULT_COLUMNS] + rows).encode(),
                 QUERIES_CSV: label_formats._csv_text(
                     [("query", "source", "label", "recording", "start_s", "end_s", "windows")]
                     + [[q.name, q.source, q.label, q.path,
                         "" if q.start_s is None else f"{q.start_s:.3f}",
                         "" if q.end_s is None else f"{q.end_s:.3f}", str(n)]
                        for q, n in zip(self.queries, self.windows_per_query)]).encode()}
        names = outputs.unique_names([(f, f) for f in hits], lambda n: label_formats.per_recording_files(
            n, ["raven"], False).values())
        tables = {}
        for file, segs in sorted(hits.items()):
            name = names.get(file) or outputs.recording_name(file, file)
            segs = sorted(segs, key=lambda s: (s.start_s, -s.confidence, s.label))
            tables[label_formats.OUTPUT_FORMATS["raven"].path(name)] = label_formats.raven_table(
                segs, self.low_hz, self.high_hz).encode()
        outputs.journal(self.output, self.run_id, "raven", list(tables))
        for rel, data in {**files, **tables}.items():
            fs.write_bytes(fs.join(self.output, *rel.split("/")), data)
        summary = {**self.summary, "results": len(rows), "recordings_with_hits": len(hits),
                   "wall_s": round(time.time() - self.started_unix_s, 2)}
        fs.write_json(fs.join(self.output, SEARCH_FILE), summary)
        outputs.finish(self.output, "search", self.run_id,
                       [RESULTS_CSV, QUERIES_CSV, SEARCH_FILE] + sorted(tables))
        return summary


def run(argv=None, save_main_session=True, test_pipeline=None):
    args, beam_args = build_arg_parser().parse_known_args(argv)
    if beam_args:
        fs.check_beam_flags(beam_args, "earmark search")
    emb_dir = fs.absolute(args.embeddings)
    summary = embeddings_io.read_summary(emb_dir)
    shards = embeddings_io.shard_paths(emb_dir, summary)
    queries = [q if q.label else dataclasses.replace(q, label=args.label or "")
               for text in args.query
               for q in parse_query(text, args.audio_root, args.label_column)]
    output = fs.absolute(args.output)
    if not fs.is_gcs(output) and not fs.is_gcs(emb_dir) and \
            (output + os.sep).startswith(emb_dir.rstrip(os.sep) + os.sep):
        raise UserError(f"--output {args.output} is inside --embeddings; choose another folder")
    if not args.overwrite and not fs.builds_template(beam_args):
        outputs.claim(output, "search", False)   # a used folder: refused before any work
    embedder = load_embedder(summary, args.model)
    started = time.time()
    vectors, counts = embed_queries(queries, summary, embedder)
    log.info("search: %d queries (%d windows) embedded; %d windows in %d shards to search",
             len(queries), sum(counts), summary.get("windows", 0), len(shards))
    fs.check_writable_output(output)
    use_beam = _runner_given(beam_args) or test_pipeline is not None
    options = fs.pipeline_options(beam_args, save_main_session)   # gs:// access, --no_auth
    template = use_beam and fs.builds_template(options)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
    if not template:
        outputs.claim(output, "search", args.overwrite)
        outputs.begin(output, "search", run_id, [RESULTS_CSV, QUERIES_CSV, SEARCH_FILE])
    config = summary.get("feature_config") or {}
    log_mel = config.get("representation", "log_mel") == "log_mel"
    low, high = ((config.get("mel_min_hz", 0.0), config.get("mel_max_hz", 0.0)) if log_mel
                 else (0.0, summary["sample_rate_hz"] / 2))
    facts = {"command": "search", "embeddings": emb_dir, "base": summary.get("base"),
             "model_id": summary.get("model_id"), "embedding_dim": summary.get("embedding_dim"),
             "top": args.top, "queries": [q.name for q in queries],
             "query_windows": counts, "shards": len(shards), "mode": "beam" if use_beam else "local",
             "run_id": run_id}
    write = WriteOutputs(output, run_id, queries, counts, facts, low, high, started)
    if not use_beam:
        t0 = time.time()
        best, windows = search_local(shards, vectors, args.top)
        write.summary = {**facts, "windows_searched": windows,
                         "search_s": round(time.time() - t0, 3)}
        return write(best)
    import apache_beam as beam
    write.summary = {**facts, "windows_searched": summary.get("windows")}
    p = test_pipeline or local_runner.new_pipeline(options)
    build_search_pipeline(p, shards, vectors, args.top, write)
    outputs.run_pipeline(p, options, output)
    return None if template else fs.read_json(fs.join(output, SEARCH_FILE))


def _runner_given(beam_args) -> bool:
    """`--runner NAME` among the Beam options: the search runs as a Beam job (other Beam
    options, e.g. --no_auth or --project, only set up file access)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    return PipelineOptions(list(beam_args)).view_as(StandardOptions).runner is not None


def main(argv=None) -> dict:
    stats = run(argv)
    if not stats:
        print("Dataflow template written")
        return {}
    print(f"search: {len(stats['queries'])} queries, top {stats['top']}, over "
          f"{stats.get('windows_searched') or 0:,} windows ({stats['mode']}); "
          f"{stats['results']} results in {stats['recordings_with_hits']} recordings")
    print(f"outputs: {fs.absolute(build_arg_parser().parse_known_args(argv)[0].output)}")
    return stats
