"""`earmark evaluate`: flags → the inputs listed with the corpus readers of
`earmark.pipelines.corpus` (what `earmark prepare` accepts: folders, globs, manifests with a
group column, gs://) → `model.evaluate`; prints the report as JSON on stdout."""
import argparse
import json
import os
import sys

from earmark.model.data_files import SPLITS
from earmark.model.errors import UserError
from earmark.pipelines import flags


def build_arg_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(
        prog="earmark evaluate",
        description="Evaluate an exported earmark model; prints a JSON report.",
        epilog="examples:\n"
               "  earmark evaluate --model models/snore --input nights/ --annotations tables/\n"
               "  earmark evaluate --model models/snore --data prepared/ --split test\n"
               "  earmark evaluate --model models/snore --manifest clips.csv --report out/\n"
               "  earmark evaluate --model models/snore --input clips/   # <label>/ folders",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model dir written by 'earmark train'")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="prepared-data folder ('earmark prepare' output)")
    src.add_argument("--manifest", help="CSV with columns path,label (raw clips), or a "
                                        "dataset's metadata CSV with its columns named by "
                                        "--path-column and --label-column")
    src.add_argument("--input", help="folder of <label>/ sub-folders of raw clips; with "
                                     "--annotations, a folder of long recordings")
    p.add_argument("--annotations", default=None,
                   help="score events on annotated recordings (--input): Raven selection "
                        "tables, Audacity label tracks or a CSV file,start_s,end_s,label (a "
                        "folder or a file), as for 'earmark prepare --annotations'")
    flags.add_label_column(p)
    flags.add_manifest_flags(p, split="evaluate")
    flags.add_annotation_encoding(p)
    p.add_argument("--split", default="test", choices=SPLITS,
                   help="with --data: which split (default test)")
    p.add_argument("--report", help="where to write evaluation.json and plots (default: --model)")
    p.add_argument("--batch-size", type=int, default=64)
    flags.add_precision(p, help="arithmetic of the image base, as for 'earmark label' "
                                "(default auto: the 8-bit file where it held parity at "
                                "training, else bfloat16 where the hardware computes it "
                                "natively, else float32; int8 to measure 8-bit weights on your "
                                "data)")
    return p


def labeled_clips(manifest: str = None, input_path: str = None, columns=None,
                  audio_root: str = None) -> list:
    """(path, label) rows of raw clips: a manifest's rows (path,label[,group], or the columns
    `columns` names, a `corpus.ManifestColumns`; relative paths against `audio_root` or its
    folder; with a split column only the rows of its test values), or the audio files in the
    label folders of --input."""
    from earmark.model.audio import AUDIO_EXTENSIONS
    from earmark.pipelines import corpus
    if manifest:
        rows = corpus.read_manifest(manifest, columns=columns, audio_root=audio_root)
        return [(r.path, r.label) for r in rows if r.split in (None, "test")]
    recordings, _ = corpus.list_input(input_path)
    rows = [(r.path, r.label) for r in recordings
            if os.path.splitext(r.path)[1].lower() in AUDIO_EXTENSIONS]
    if not rows:
        raise UserError(f"--input {input_path}: no audio files in label folders; a folder of "
                        "clips needs one sub-folder per label (DIR/<label>/<file>)")
    return rows


def evaluate_events(args) -> dict:
    from earmark.model import evaluate
    from earmark.pipelines import corpus, fs
    found = corpus.list_annotated(args.input, args.annotations, args.label_column,
                                  args.annotation_encoding)
    if not found.recordings:
        raise UserError(f"--annotations {args.annotations}: no table matches a recording under "
                        f"--input {args.input}; name each table after its recording")
    return evaluate.evaluate_events(
        args.model, [(r.key, r.path, list(r.events)) for r in found.recordings],
        source=fs.absolute(args.input), annotations=fs.absolute(args.annotations),
        unannotated=[r.key for r in found.unannotated],
        left_out=[(r.key, why) for r, why in found.unusable], problems=found.bad,
        ignore_s={r.key: list(r.ignore_s) for r in found.recordings if r.ignore_s},
        report_dir=args.report, batch_size=args.batch_size, read_bytes=fs.read_bytes,
        precision=args.precision)


def main(argv=None) -> dict:
    """Parse, evaluate, print the report as JSON; returns the report."""
    args = build_arg_parser().parse_args(argv)
    from earmark.pipelines import corpus
    flags.resolve_label_column(args)
    columns = corpus.ManifestColumns.from_args(args)
    if args.annotations and not args.input:
        raise UserError("--annotations scores events on long recordings: give them with "
                        "--input FOLDER")
    from earmark.model import evaluate
    if args.annotations:
        report = evaluate_events(args)
    elif args.data:
        report = evaluate.evaluate_prepared(args.model, args.data, args.split,
                                            report_dir=args.report, batch_size=args.batch_size,
                                            precision=args.precision)
    else:
        from earmark.pipelines import fs
        rows = labeled_clips(args.manifest, args.input, columns, args.audio_root)
        report = evaluate.evaluate_clips(args.model, rows,
                                         fs.absolute(args.manifest or args.input),
                                         report_dir=args.report, batch_size=args.batch_size,
                                         read_bytes=fs.read_bytes, precision=args.precision)
    json.dump(report, sys.stdout, indent=2)
    print()
    return report
