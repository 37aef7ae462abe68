"""Search by example on a night: how many of the top windows a snore clip finds are snores.

    .venv/bin/python benchmarks/search_precision.py [--base musicnn] [--minutes 10]
        [--queries 10] [--top 20] [--seed 1]

A night of `--minutes` is built with ../shared/tools/make_night.py from the held-out
eighth of ../shared/data/snoring (tests/nights.py's split: those clips are nowhere else);
`earmark embed --base BASE` embeds it (an embedding base alone, no training); each of
`--queries` snore clips from the other seven eighths (never in the night) is an
`earmark search` query. A window is a snore window when at least half of it lies inside
a true snore event. Prints, per query and on average, the precision of the top `--top`
windows against the fraction of snore windows in the night (issue 29's target: at least 3
times that fraction).
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def earmark(*args):
    subprocess.run([sys.executable, "-m", "earmark", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def snore_fraction(start, end, truth) -> float:
    inside = sum(max(0.0, min(end, e.end_s) - max(start, e.start_s)) for e in truth)
    return inside / (end - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="musicnn")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    from earmark.pipelines import embeddings_io
    from tests import nights
    with tempfile.TemporaryDirectory(prefix="earmark-search-precision-") as tmp:
        clips = nights.split_snoring_clips(tmp)
        os.makedirs(os.path.join(tmp, "night"))
        night = os.path.join(tmp, "night", "night.wav")
        truth = nights.make_night(clips["held_out"], night, os.path.join(tmp, "truth.csv"),
                                  args.minutes, args.seed)
        emb = os.path.join(tmp, "emb")
        earmark("embed", "--base", args.base, "--input", os.path.dirname(night), "--output", emb)
        rows = embeddings_io.read_rows(emb)
        is_snore = {(r[0], r[1]): snore_fraction(r[1], r[2], truth) >= 0.5 for r in rows}
        base_rate = sum(is_snore.values()) / len(is_snore)
        with open(clips["train_csv"]) as f:
            snores = [r["path"] for r in csv.DictReader(f) if r["label"] == "snore"]
        step = max(1, len(snores) // args.queries)
        queries = snores[::step][:args.queries]
        out = os.path.join(tmp, "hits")
        earmark("search", "--embeddings", emb, *[a for q in queries for a in ("--query", q)],
                "--top", str(args.top), "--output", out)
        with open(os.path.join(out, "results.csv"), newline="") as f:
            hits = list(csv.DictReader(f))
        print(f"{args.base}: a {args.minutes:g}-minute night, {len(rows)} windows, "
              f"{100 * base_rate:.1f} % of them snore; {len(truth)} snore events")
        precisions = []
        for q in queries:
            mine = [h for h in hits if h["query"] == q]
            p = sum(is_snore[(h["file"], float(h["start_s"]))] for h in mine) / len(mine)
            precisions.append(p)
            print(f"  {os.path.basename(q):>16}  precision@{args.top} {p:.2f}  "
                  f"({p / base_rate:.1f}x the fraction of snore windows)")
        mean = sum(precisions) / len(precisions)
        print(f"mean precision@{args.top} {mean:.2f} = {mean / base_rate:.1f}x the fraction of "
              f"snore windows ({base_rate:.3f}); target >= 3x")


if __name__ == "__main__":
    main()
