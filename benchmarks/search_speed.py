"""`earmark search` speed: exact cosine search over synthetic embeddings, as the command runs it.

    .venv/bin/python benchmarks/search_speed.py [--windows 1000000,10000000] [--dim 1024]
        [--queries 1,10] [--top 20] [--folder DIR] [--beam]

For each `--windows` size: writes that many rows of random float32 vectors (`--dim`, 1024
like BirdNET's) with earmark's own Parquet writer (`pipelines/embeddings_io.py`: shards of
250 000 rows, row groups of 16 MiB, one 'recording' per 7 500 windows: an hour at 0.48 s),
then times `pipelines.search.search_local`, the streaming search `earmark search` runs
(one row group in memory at a time, a running top K per query), for each `--queries`
count; with `--beam`, also the same search as a Beam job on the DirectRunner. Prints
seconds, windows per second and GB of vectors read per second, and peak RSS.

The shards are written just before they are searched, so a size that fits in the page
cache is searched from memory ("warm"); one that does not is read from disk. Needs
4.1 GB of disk per million windows at 1024 dimensions (10 M: 41 GB); the folder is
removed at the end unless --keep.
"""
import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ROWS_PER_SHARD = 250_000
WINDOWS_PER_FILE = 7_500
HOP_S = 0.48
WINDOW_S = 0.975


def write_corpus(folder: str, windows: int, dim: int, seed: int = 0) -> float:
    """`windows` random rows in shards under `folder`, with embed.json → seconds taken."""
    from earmark.pipelines import embeddings_io
    t0 = time.time()
    shards = max(1, -(-windows // ROWS_PER_SHARD))
    names = embeddings_io.shard_names(shards)
    step = embeddings_io.rows_per_group(dim)
    for s, name in enumerate(names):
        rng = np.random.default_rng(seed + s)
        first = s * ROWS_PER_SHARD
        rows = min(ROWS_PER_SHARD, windows - first)

        def blocks():
            for i in range(0, rows, step):
                n = min(step, rows - i)
                index = np.arange(first + i, first + i + n)
                files = [f"rec_{k // WINDOWS_PER_FILE:06d}.wav" for k in index]
                starts = (index % WINDOWS_PER_FILE) * HOP_S
                yield files, starts, starts + WINDOW_S, rng.standard_normal((n, dim), np.float32), None
        embeddings_io.write_shard(os.path.join(folder, name), blocks(), dim)
    with open(os.path.join(folder, embeddings_io.EMBED_FILE), "w") as f:
        json.dump({"shards": names, "embedding_dim": dim, "windows": windows, "base": "synthetic",
                   "model_id": ""}, f)
    return time.time() - t0


def time_local(folder: str, queries: np.ndarray, top: int) -> tuple:
    from earmark.pipelines import embeddings_io, search
    shards = embeddings_io.shard_paths(folder)
    t0 = time.time()
    best, windows = search.search_local(shards, queries, top)
    return time.time() - t0, windows, best


def time_beam(folder: str, queries: np.ndarray, top: int) -> tuple:
    """The same search as a Beam job (DirectRunner) → (seconds, its best rows per query)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from earmark.pipelines import embeddings_io, search
    shards = embeddings_io.shard_paths(folder)
    out = os.path.join(folder, "beam_best.json")
    t0 = time.time()
    p = beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"]))
    search.build_search_pipeline(p, shards, queries, top, _Keep(out))
    p.run().wait_until_finish()
    seconds = time.time() - t0
    with open(out) as f:
        return seconds, [[tuple(c) for c in b] for b in json.load(f)]


class _Keep:
    """The Beam job's last step here: its best rows to a JSON file (the job's functions run
    on copies, so nothing comes back through memory)."""

    def __init__(self, path):
        self.path = path

    def __call__(self, best):
        with open(self.path, "w") as f:
            json.dump(best, f)
        return {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", default="1000000")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", default="1,10")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--folder", default=None)
    ap.add_argument("--beam", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    base = args.folder or tempfile.mkdtemp(prefix="earmark-search-speed-")
    rng = np.random.default_rng(7)
    print(f"exact search, {args.dim} dimensions, top {args.top}; CPUs: {os.cpu_count()}; "
          f"folder {base}")
    print(f"{'windows':>11} {'queries':>7} {'mode':>6} {'seconds':>8} {'windows/s':>12} {'GB/s':>6}")
    try:
        for windows in [int(w) for w in args.windows.split(",")]:
            folder = os.path.join(base, f"w{windows}")
            os.makedirs(folder, exist_ok=True)
            need = windows * args.dim * 4
            free = shutil.disk_usage(folder).free
            if need * 1.1 > free:
                print(f"{windows:>11,} skipped: needs {need / 1e9:.1f} GB of disk, "
                      f"{free / 1e9:.1f} GB free")
                continue
            took = write_corpus(folder, windows, args.dim)
            print(f"{windows:>11,} written in {took:.1f} s ({need / 1e9:.1f} GB of vectors)")
            for q in [int(n) for n in args.queries.split(",")]:
                queries = rng.standard_normal((q, args.dim)).astype(np.float32)
                queries /= np.linalg.norm(queries, axis=1, keepdims=True)
                seconds, searched, best = time_local(folder, queries, args.top)
                assert searched == windows and all(len(b) == args.top for b in best)
                print(f"{windows:>11,} {q:>7} {'local':>6} {seconds:>8.2f} "
                      f"{windows / seconds:>12,.0f} {need / 1e9 / seconds:>6.2f}")
                if args.beam:
                    seconds_b, best_b = time_beam(folder, queries, args.top)
                    assert best_b == best, "the Beam search found other rows"
                    print(f"{windows:>11,} {q:>7} {'beam':>6} {seconds_b:>8.2f} "
                          f"{windows / seconds_b:>12,.0f} {need / 1e9 / seconds_b:>6.2f}")
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.keep and not args.folder:
            shutil.rmtree(base, ignore_errors=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
