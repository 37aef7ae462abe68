"""`earmark prepare`'s flags, apart from the pipeline so that `earmark prepare --help`
imports neither Beam nor TensorFlow.
"""
import argparse

from earmark.model import base_registry, splits, window_labels
from earmark.model.features import RESAMPLE_QUALITIES, FeatureConfig
from earmark.pipelines import flags


def build_arg_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(
        prog="earmark prepare",
        description="Turn labeled recordings into sharded log-mel spectrogram TFRecords.",
        epilog="examples:\n"
               "  earmark prepare --input corpus/ --output prepared/\n"
               "  earmark prepare --manifest labels.csv --output gs://bucket/prepared \\\n"
               "      --direct_num_workers=2 --direct_running_mode=multi_processing\n"
               "  earmark prepare --manifest ESC-50/meta/esc50.csv --audio-root ESC-50/audio \\\n"
               "      --path-column filename --label-column category --group-column src_file \\\n"
               "      --split-column fold --test-values 5 --output prepared/\n"
               "Any Apache Beam option (--runner, --project, --region, ...) passes through.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="folder of <label>/ sub-folders, or a glob; with "
                                     "--annotations a folder of recordings; local or gs://")
    src.add_argument("--manifest", help="CSV with columns path,label[,group], or a dataset's "
                                        "metadata CSV with its columns named by --path-column, "
                                        "--label-column, ...; local or gs://")
    p.add_argument("--annotations", default=None,
                   help="annotated long recordings: a folder or file of Raven selection tables "
                        "(*.selections.txt), Audacity label tracks (*.txt) or a CSV "
                        "file,start_s,end_s,label; local or gs://. Every window of each "
                        "annotated recording in --input is labeled by its overlap with events")
    flags.add_label_column(p)
    flags.add_manifest_flags(p, split="prepare")
    p.add_argument("--min-overlap", type=float, default=window_labels.DEFAULT_MIN_OVERLAP,
                   help="a window gets an event's label when the event covers at least this "
                        "fraction of it (of the event, when shorter); windows touching an event "
                        "less are left out (default 0.5)")
    p.add_argument("--background", default="background",
                   help="label of annotated windows touching no event (default background; "
                        "'none' leaves them out)")
    p.add_argument("--annotated-extent", default="full", choices=window_labels.EXTENTS,
                   help="what the tables cover: full (default): each annotated recording "
                        "whole, so time outside every event is background; selections: only "
                        "the selections (reviewed detections): windows outside them are left "
                        "out, and selections labeled as negatives are background examples")
    p.add_argument("--negative-label", action="append", default=[],
                   help="an annotation label that marks a span holding no event, trained as "
                        "background (repeatable or comma-separated; background, the "
                        "--background label and not_<label> / no_<label> always are)")
    flags.add_annotation_encoding(p)
    flags.add_output_folder(p)
    p.add_argument("--split", default="80/10/10",
                   help="train/validation/test fractions (default 80/10/10)")
    p.add_argument("--split-by", default="auto", choices=splits.SPLIT_BY,
                   help="how annotated recordings are split: whole recordings, or time blocks "
                        f"of about {splits.BLOCK_S:g} s within each (edges moved out of "
                        "events); default auto: by recording when that gives the training and "
                        "validation splits one each, else by time")
    p.add_argument("--base", default=None,
                   help=f"the base the data is for: an embedding base "
                        f"({', '.join(base_registry.names('embedding'))}) takes raw waveform "
                        "windows at its own sample rate and window length; an ensemble (e.g. "
                        "birdnet+musicnn) at its highest member rate; an image base "
                        f"({', '.join(base_registry.names('image'))}) or none: log-mel "
                        "patches (default)")
    p.add_argument("--patch-hop-seconds", type=flags.positive_float("--patch-hop-seconds", 0.96), default=None,
                   help="hop between patches (default: 0.96 for log-mel, no overlap; half the "
                        "window for an embedding base)")
    p.add_argument("--resample-quality", default=FeatureConfig.resample_quality,
                   choices=RESAMPLE_QUALITIES, help="soxr quality (default HQ)")
    p.add_argument("--decoder", default="soundfile", choices=("soundfile", "tfio"),
                   help="audio decoder (default soundfile: measured 6x faster than tfio)")
    p.add_argument("--num-shards", type=flags.non_negative_int("--num-shards", 4), default=0,
                   help="shards per split (default 0: the runner decides)")
    flags.add_overwrite(p)
    return p
