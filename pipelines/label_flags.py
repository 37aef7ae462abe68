"""`earmark label`'s flags, apart from the pipeline so that `earmark label --help` imports
neither Beam nor TensorFlow (under a second).
"""
import argparse

from earmark.model.features import LOG_MEL_LABELING_HOP_SECONDS
from earmark.pipelines import flags, label_formats


def build_arg_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(
        prog="earmark label",
        description="Label every recording of a corpus with time segments, using a trained model.",
        epilog="examples:\n"
               "  earmark label --model model/ --input recordings/ --output labels/\n"
               "  earmark label --model gs://b/model --input 'gs://b/nights/*.flac' \\\n"
               "      --output gs://b/labels --formats csv,raven,audacity,jsonl --runner DataflowRunner ...\n"
               "Any Apache Beam option passes through.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the --model-dir of 'earmark train' (local or gs://)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="folder (searched recursively) or glob; local or gs://")
    src.add_argument("--manifest", help="CSV with a path column; local or gs://")
    flags.add_output_folder(p)
    p.add_argument("--formats", default="csv,raven",
                   help=f"comma-separated, from {','.join(label_formats.FORMATS)} (default csv,raven)")
    p.add_argument("--scores", action="store_true", help="also write per-window scores")
    p.add_argument("--hop-seconds", type=float, default=None,
                   help="window hop (default: the model's labeling_hop_seconds, "
                        f"{LOG_MEL_LABELING_HOP_SECONDS:g} for image-base models, half or a "
                        "quarter of the window for embedding bases)")
    p.add_argument("--chunk-seconds", type=float, default=60.0,
                   help="audio per work item; long files are split into chunks (default 60)")
    p.add_argument("--threshold", action="append", default=[],
                   help="override the model's calibrated thresholds: 0.7 for all labels, or "
                        "LABEL=0.7 (repeatable)")
    p.add_argument("--smoothing", action="append", default=[],
                   help="override: moving average over N windows, N or LABEL=N (1: none)")
    p.add_argument("--min-duration", action="append", default=[],
                   help="override: drop shorter segments, seconds or LABEL=seconds")
    p.add_argument("--max-gap", action="append", default=[],
                   help="override: merge same-label segments this close, seconds or LABEL=seconds")
    p.add_argument("--extend", action="append", default=[],
                   help="override: widen segments by this on both sides, seconds or LABEL=seconds")
    p.add_argument("--emit-background", action="store_true",
                   help="also write segments of the model's background labels (e.g. "
                        "background, not_snore), which are left out by default")
    flags.add_precision(p, help="arithmetic of the image base: auto (default) is bfloat16 "
                                "where the CPU (AVX512_BF16, AMX) or GPU computes it natively, "
                                "else float32; int8 (a model trained with --int8): 8-bit weights "
                                "in TFLite, about 1.2x faster on a CPU, scores within ~0.1 "
                                "(docs/benchmarks.md); the model file stays float32")
    p.add_argument("--batch-size", type=int, default=128, help="windows per model call (default 128)")
    p.add_argument("--incremental", action="store_true",
                   help="label only recordings that are new or changed since the last run "
                        "(ledger.json under --output); each run gets runs/RUN_ID/")
    flags.add_overwrite(p)
    return p
