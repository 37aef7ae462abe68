"""`earmark label`'s flags, apart from the pipeline so that `earmark label --help` imports
neither Beam nor TensorFlow (under a second).
"""
import argparse
from typing import NamedTuple, Union

from earmark.model.features import LOG_MEL_LABELING_HOP_SECONDS
from earmark.model.memory_budget import parse_bytes
from earmark.model.segments import PostProcessing
from earmark.pipelines import flags, label_formats

# post-processing flag (its args attribute) → the PostProcessing field it overrides, and a
# good value for messages
OVERRIDE_FLAGS = {"threshold": ("threshold", "0.7"), "smoothing": ("smoothing_windows", "3"),
                  "min_duration": ("min_duration_s", "0.5"), "max_gap": ("max_gap_s", "1"),
                  "extend": ("extend_s", "0.1"), "low_threshold": ("low_threshold", "0.3")}


class Override(NamedTuple):
    """One post-processing flag as given: `label` ("": every label), its value, in range."""
    label: str
    value: Union[int, float]
    text: str   # as typed, for messages


def override(attr: str) -> callable:
    """The `type=` of a post-processing flag: VALUE or LABEL=VALUE → `Override`, the value
    in the range `PostProcessing.RULES` sets for its field. The label is checked against the
    model's once the model is read (`label.post_processing`)."""
    field, example = OVERRIDE_FLAGS[attr]

    def parse(text):
        name, _, value = text.rpartition("=")
        return Override(name, PostProcessing.parse(field, value), text)
    return flags.checked("--" + attr.replace("_", "-"), parse, f"{example} or LABEL={example}")


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
    flags.add_corpus_flags(p)
    flags.add_output_folder(p)
    p.add_argument("--formats", default="csv,raven",
                   type=flags.comma_choices("--formats", label_formats.FORMATS, "csv,raven"),
                   help=f"comma-separated, from {','.join(label_formats.FORMATS)} (default csv,raven)")
    p.add_argument("--scores", action="store_true", help="also write per-window scores")
    p.add_argument("--hop-seconds", default=None,
                   type=flags.positive_float("--hop-seconds", LOG_MEL_LABELING_HOP_SECONDS),
                   help="window hop (default: the model's labeling_hop_seconds, "
                        f"{LOG_MEL_LABELING_HOP_SECONDS:g} for image-base models, half or a "
                        "quarter of the window for embedding bases); a multiple of the "
                        "model's step (0.01 s for log-mel, a sample for embedding bases), "
                        "from 0.01 s up to its window")
    p.add_argument("--chunk-seconds", default=60.0,
                   type=flags.positive_float("--chunk-seconds", 60),
                   help="audio per work item, seconds > 0; long files are split into chunks (default 60)")
    p.add_argument("--threshold", action="append", default=[], type=override("threshold"),
                   help="override the model's calibrated thresholds: 0.7 for all labels, or "
                        "LABEL=0.7 (repeatable; in [0, 1])")
    p.add_argument("--low-threshold", action="append", default=[],
                   type=override("low_threshold"),
                   help="override: hysteresis; a dip of the scores inside a segment that "
                        "stays at or above this does not split it, 0.3 or LABEL=0.3 (in [0, 1], "
                        "at most the threshold; the threshold itself: none). --threshold alone "
                        "keeps the model's low threshold, capped at the new threshold")
    p.add_argument("--smoothing", action="append", default=[], type=override("smoothing"),
                   help="override: moving average over N windows, N or LABEL=N (a whole number >= 1; "
                        "1: none)")
    p.add_argument("--min-duration", action="append", default=[], type=override("min_duration"),
                   help="override: drop shorter segments, seconds or LABEL=seconds (>= 0)")
    p.add_argument("--max-gap", action="append", default=[], type=override("max_gap"),
                   help="override: merge same-label segments this close, seconds or LABEL=seconds "
                        "(>= 0)")
    p.add_argument("--extend", action="append", default=[], type=override("extend"),
                   help="override: widen segments by this on both sides, seconds or LABEL=seconds "
                        "(>= 0)")
    p.add_argument("--emit-background", action="store_true",
                   help="also write segments of the model's background labels (e.g. "
                        "background, not_snore), which are left out by default")
    flags.add_precision(p, help="arithmetic of the image base: auto (default) is int8 for a "
                                "model whose 8-bit file held parity at training, "
                                "else bfloat16 where the CPU (AVX512_BF16, AMX) or GPU computes "
                                "it natively, else float32; int8: the model's 8-bit file in "
                                "LiteRT, no TensorFlow, scores within ~0.1 (docs/label.md); "
                                "the model file stays float32")
    p.add_argument("--batch-size", type=flags.positive_int("--batch-size", 128), default=None,
                   help="windows per model call, >= 1 (default: the most, up to 128, that "
                        "keep the peak within --memory-budget; given, a ceiling)")
    p.add_argument("--memory-budget", type=flags.checked("--memory-budget", parse_bytes, "1.5GB"),
                   default="1.5GB",
                   help="peak memory (RSS) of a labeling process the batch size is chosen for, "
                        "e.g. 1.5GB (default), 800MB, 4GiB (figures per base: docs/benchmarks.md)")
    p.add_argument("--incremental", action="store_true",
                   help="label only recordings that are new or changed since the last run "
                        "(ledger.json under --output); each run gets runs/RUN_ID/; "
                        "recordings gone from the corpus leave the outputs")
    p.add_argument("--keep-missing", action="store_true",
                   help="with --incremental: keep the segments and tables of recordings no "
                        "longer in the corpus (default: they are removed, and counted in "
                        "run.json as files_removed)")
    flags.add_overwrite(p)
    return p
