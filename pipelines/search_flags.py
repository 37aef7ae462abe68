"""`earmark search`'s flags, apart from the search so that `earmark search --help` imports
neither Beam nor TensorFlow."""
import argparse

from earmark.pipelines import flags

DEFAULT_TOP = 20


def build_arg_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(
        prog="earmark search",
        description="Find the windows of an embedded corpus most like some examples: exact "
                    "cosine similarity over every window ('earmark embed' wrote them). Writes "
                    "results.csv, Raven tables and review.html (listen, answer yes / no / "
                    "another label, save verdicts.csv for 'earmark prepare --annotations "
                    "verdicts.csv --annotated-extent selections').",
        epilog="examples:\n"
               "  earmark search --embeddings emb/ --query snore.wav --label snore --output hits/\n"
               "  earmark search --embeddings emb/ --query 'night.flac@612.5-615.0' --top 50 --output hits/\n"
               "  earmark search --embeddings emb/ --query night.Table.1.selections.txt --output hits/\n"
               "  earmark search --embeddings gs://b/emb --query gs://b/q.wav --output gs://b/hits \\\n"
               "      --runner DataflowRunner ...   (with --runner: the search runs as a Beam job)\n"
               "A query is an audio file, a span of one (FILE@START-END, seconds), or a Raven "
               "selection table or Audacity label track whose selections are the queries.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", required=True,
                   help="the --output of 'earmark embed' (or a label output's embeddings/); "
                        "local or gs://")
    p.add_argument("--query", action="append", required=True,
                   help="an audio file, FILE@START-END (seconds), or a Raven / Audacity table "
                        "(.txt) or CSV (file,start_s,end_s,label); repeatable")
    p.add_argument("--top", type=flags.positive_int("--top", DEFAULT_TOP), default=DEFAULT_TOP,
                   help=f"windows to return per query, >= 1 (default {DEFAULT_TOP})")
    flags.add_output_folder(p)
    p.add_argument("--model", default=None,
                   help="the model the embeddings were made with, when it is no longer where "
                        "embed.json says (it must have the same model id)")
    p.add_argument("--audio-root", default=None,
                   help="the folder a table's recordings are relative to (default: the "
                        "table's own folder); review.html also looks there for the corpus's "
                        "recordings not found where embed.json says")
    p.add_argument("--label", default=None,
                   help="the label of queries that have none of their own (audio files, "
                        "spans, unlabeled selections) in queries.csv and review.html "
                        "(default: the query's name)")
    p.add_argument("--label-column", default=None,
                   help="the label column of Raven tables (default: Annotation, else Label)")
    flags.add_overwrite(p)
    return p
