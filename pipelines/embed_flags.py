"""`earmark embed`'s flags, apart from the pipeline so that `earmark embed --help` imports
neither Beam nor TensorFlow."""
import argparse

from earmark.model.memory_budget import parse_bytes
from earmark.pipelines import flags


def build_arg_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(
        prog="earmark embed",
        description="Every window of every recording of a corpus → its embedding (the frozen "
                    "base's vector; with --model, the model's scores too), as sharded Parquet.",
        epilog="examples:\n"
               "  earmark embed --model model/ --input recordings/ --output emb/\n"
               "  earmark embed --base musicnn --input 'nights/*.flac' --output emb/ --incremental\n"
               "  earmark embed --model gs://b/model --input 'gs://b/nights/*.flac' \\\n"
               "      --output gs://b/emb --runner DataflowRunner ...\n"
               "Any Apache Beam option passes through. Then: earmark search --embeddings emb/ ...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="the --model-dir of 'earmark train' (local or gs://): "
                                       "its base's vectors and its scores per label")
    which.add_argument("--base", help="an embedding base alone, no trained model (musicnn, "
                                      "birdnet, A+B), at its own window and hop")
    flags.add_corpus_flags(p)
    flags.add_output_folder(p)
    p.add_argument("--hop-seconds", default=None,
                   type=flags.positive_float("--hop-seconds", 0.48),
                   help="window hop (default: the model's labeling hop, as 'earmark label'; "
                        "with --base, half its window)")
    p.add_argument("--chunk-seconds", default=60.0,
                   type=flags.positive_float("--chunk-seconds", 60),
                   help="audio per work item, seconds > 0 (default 60)")
    p.add_argument("--shards", default=None, type=flags.positive_int("--shards", 4),
                   help="Parquet shards to write, >= 1 (default: one per 200 recordings); a "
                        "recording's rows all go to one shard")
    flags.add_precision(p, help="arithmetic of a model's image base, as for 'earmark label' "
                                "(auto, float32, bfloat16; int8 has no embeddings)")
    p.add_argument("--batch-size", type=flags.positive_int("--batch-size", 128), default=None,
                   help="windows per model call, >= 1 (default: as 'earmark label', within "
                        "--memory-budget)")
    p.add_argument("--memory-budget", type=flags.checked("--memory-budget", parse_bytes, "1.5GB"),
                   default="1.5GB", help="peak memory of a process the batch is chosen for "
                                         "(default 1.5GB)")
    p.add_argument("--incremental", action="store_true",
                   help="embed only recordings that are new or changed since the last run "
                        "(ledger.json under --output); each run's shards go to runs/RUN_ID/")
    p.add_argument("--keep-missing", action="store_true",
                   help="with --incremental: keep the rows of recordings no longer in the corpus")
    flags.add_overwrite(p)
    return p
