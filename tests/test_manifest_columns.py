"""Manifests as datasets ship them: ESC-50's `meta/esc50.csv` and UrbanSound8K's
`metadata/UrbanSound8K.csv`, with all their real columns, read with flags only
(`--path-column`, `--label-column`, `--group-column`, `--split-column` with `--test-values`
and `--validation-values`, `--audio-root`); their mistakes are one-line errors naming the
flag. Audio is a short real tone per row."""
import argparse
import csv
import json
import os

import pytest

from earmark.model.errors import UserError
from earmark.model.splits import split_of
from earmark.pipelines import corpus, prepare
from tests.audio_fixtures import tone, write
from tests.prepared import load_json
from tests.fixtures import one_line_error

RATE = 16000
ESC50_COLUMNS = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
# (filename, fold, target, category, esc10, src_file, take): source 100 has two takes in fold 1
ESC50_ROWS = [
    ("1-100-A-0.wav", "1", "0", "dog", "True", "100", "A"),
    ("1-100-B-0.wav", "1", "0", "dog", "True", "100", "B"),
    ("1-101-A-1.wav", "1", "1", "rooster", "True", "101", "A"),
    ("2-102-A-0.wav", "2", "0", "dog", "True", "102", "A"),
    ("2-103-A-1.wav", "2", "1", "rooster", "True", "103", "A"),
    ("3-104-A-0.wav", "3", "0", "dog", "True", "104", "A"),
    ("3-105-A-1.wav", "3", "1", "rooster", "True", "105", "A"),
    ("4-106-A-0.wav", "4", "0", "dog", "True", "106", "A"),
    ("5-107-A-0.wav", "5", "0", "dog", "True", "107", "A"),
    ("5-108-A-1.wav", "5", "1", "rooster", "True", "108", "A"),
]
US8K_COLUMNS = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
US8K_ROWS = [
    ("7061-6-0-0.wav", "7061", "0.0", "1.0", "1", "1", "6", "gun_shot"),
    ("7061-6-0-1.wav", "7061", "1.0", "2.0", "1", "1", "6", "gun_shot"),
    ("7383-3-0-0.wav", "7383", "0.0", "1.0", "2", "1", "3", "dog_bark"),
    ("9031-3-1-0.wav", "9031", "0.0", "1.0", "1", "2", "3", "dog_bark"),
    ("9032-6-0-0.wav", "9032", "0.0", "1.0", "1", "2", "6", "gun_shot"),
    ("9674-3-0-0.wav", "9674", "0.0", "1.0", "1", "3", "3", "dog_bark"),
    ("9675-6-0-0.wav", "9675", "0.0", "1.0", "1", "3", "6", "gun_shot"),
]


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def esc50(root):
    """ESC-50's layout: ESC-50/meta/esc50.csv and ESC-50/audio/*.wav."""
    os.makedirs(root / "audio")
    for i, row in enumerate(ESC50_ROWS):
        write(str(root / "audio" / row[0]), tone(1.0, RATE, freq_hz=300.0 + 100 * i), RATE)
    return write_csv(root / "meta" / "esc50.csv", ESC50_COLUMNS, ESC50_ROWS)


def urbansound8k(root):
    """UrbanSound8K's layout: metadata/UrbanSound8K.csv and audio/fold<N>/<slice_file_name>."""
    for i, row in enumerate(US8K_ROWS):
        os.makedirs(root / "audio" / f"fold{row[5]}", exist_ok=True)
        write(str(root / "audio" / f"fold{row[5]}" / row[0]),
              tone(1.0, RATE, freq_hz=500.0 + 100 * i), RATE)
    return write_csv(root / "metadata" / "UrbanSound8K.csv", US8K_COLUMNS, US8K_ROWS)


def recordings(out) -> dict:
    """recordings.jsonl → {file name: split}."""
    with open(os.path.join(out, "recordings.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {os.path.basename(r["source"]): r["split"] for r in rows}


ESC50_FLAGS = ["--path-column", "filename", "--label-column", "category",
               "--group-column", "src_file", "--split-column", "fold", "--test-values", "5"]


@pytest.fixture(scope="module")
def esc50_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("esc50") / "ESC-50"
    manifest = esc50(root)
    out = str(root.parent / "out")
    prepare.main(["--manifest", manifest, "--audio-root", str(root / "audio"),
                  "--output", out] + ESC50_FLAGS)
    return root, manifest, out


def test_esc50_metadata_as_shipped_splits_by_fold(esc50_run):
    """Fold 5 is test; the others train or validation by the stable hash of their source
    (src_file), at --split's train:validation ratio (80/10/10 → 8:1)."""
    _, _, out = esc50_run
    split = recordings(out)
    expected = {row[0]: "test" if row[1] == "5" else
                split_of(row[5], (8 / 9, 1 / 9, 0.0)) for row in ESC50_ROWS}
    assert split == expected
    assert split["1-100-A-0.wav"] == split["1-100-B-0.wav"], "a source spans two splits"
    features = load_json(out, "features.json")
    assert features["labels"] == ["dog", "rooster"]
    assert features["split_column"] == {"column": "fold", "test_values": ["5"],
                                        "validation_values": []}
    stats = load_json(out, "stats.json")
    assert stats["files_ok"] == len(ESC50_ROWS) and stats["files_failed"] == 0
    assert stats["splits"]["test"] == {
        "dog": {"files": 1, "patches": 1, "seconds": 1.0},
        "rooster": {"files": 1, "patches": 1, "seconds": 1.0}}


def test_urbansound8k_metadata_with_a_path_template_and_a_validation_fold(tmp_path):
    """UrbanSound8K names a slice only; `fold{fold}/{slice_file_name}` finds it under
    --audio-root. --validation-values holds out fold 2, so the rest is all train."""
    root = tmp_path / "UrbanSound8K"
    manifest = urbansound8k(root)
    out = str(tmp_path / "out")
    prepare.run(["--manifest", manifest, "--audio-root", str(root / "audio"),
                 "--path-column", "fold{fold}/{slice_file_name}", "--label-column", "class",
                 "--group-column", "fsID", "--split-column", "fold", "--test-values", "3",
                 "--validation-values", "2", "--output", out])
    assert recordings(out) == {row[0]: {"1": "train", "2": "validation", "3": "test"}[row[5]]
                               for row in US8K_ROWS}
    assert load_json(out, "features.json")["labels"] == ["dog_bark", "gun_shot"]
    assert load_json(out, "stats.json")["files_failed"] == 0


def with_rows(tmp_path, rows, columns=ESC50_COLUMNS):
    return write_csv(tmp_path / "meta" / "esc50.csv", columns, rows)


@pytest.mark.parametrize("make,flags,message", [
    (None, ["--label-column", "category"],
     "no 'path' column: name the path column with --path-column"),
    (None, ["--path-column", "filename"],
     "no 'label' column: name the label column with --label-column"),
    (None, ESC50_FLAGS[:4] + ["--split-column", "Fold", "--test-values", "5"],
     "found ['filename', 'fold', 'target', 'category', 'esc10', 'src_file', 'take']; "
     "no 'Fold' column: name the split column with --split-column"),
    (None, ESC50_FLAGS[:8] + ["--test-values", "6,5"],
     "--test-values 6: no row of --manifest"),
    (None, ESC50_FLAGS + ["--validation-values", "7"],
     "--validation-values 7: no row of --manifest"),
    (None, ESC50_FLAGS[:8], "--split-column fold needs --test-values"),
    (None, ESC50_FLAGS[:4] + ["--test-values", "5"], "--test-values needs --split-column"),
    (None, ESC50_FLAGS + ["--validation-values", "4,5"],
     "--test-values and --validation-values both name 5"),
    (lambda rows: rows + [("5-107-A-0.wav", "4", "0", "dog", "True", "107", "A")],
     ESC50_FLAGS[:4] + ESC50_FLAGS[6:],
     "lines 10 and 12 list 5-107-A-0.wav with fold '5' and '4'; a file belongs to one split"),
    (lambda rows: rows[:1] + [("2-100-C-0.wav", "2", "0", "dog", "True", "100", "C")],
     ESC50_FLAGS, "lines 2 and 3: group '100' (src_file) has fold '1' and '2'; a group stays "
                  "in one split"),
    (None, ESC50_FLAGS[:4] + ["--path-column", "fold{fold/{filename}"],
     "--path-column 'fold{fold/{filename}' is not a column name nor a template"),
], ids=["path-column", "label-column", "split-column", "test-value-absent",
        "validation-value-absent", "split-without-test-values", "test-values-without-split",
        "value-in-both", "file-in-two-folds", "group-in-two-folds", "bad-template"])
def test_manifest_column_mistakes_are_one_line_errors(tmp_path, capsys, make, flags, message):
    manifest = with_rows(tmp_path, (make or list)(list(ESC50_ROWS)))
    err = one_line_error(capsys, ["prepare", "--manifest", manifest,
                                  "--output", str(tmp_path / "out")] + flags)
    assert message in err, err
    assert not os.path.exists(tmp_path / "out"), "an error before the run wrote output"


def test_values_found_are_named_when_a_test_value_is_absent(tmp_path, capsys):
    manifest = with_rows(tmp_path, ESC50_ROWS)
    err = one_line_error(capsys, ["prepare", "--manifest", manifest, "--output",
                                  str(tmp_path / "out")] + ESC50_FLAGS[:8] + ["--test-values", "05"])
    assert err.endswith("its fold values are '1', '2', '3', '4', '5'"), err


def test_manifest_flags_without_a_manifest_and_a_missing_audio_root(tmp_path, capsys):
    os.makedirs(tmp_path / "clips" / "dog")
    write(str(tmp_path / "clips" / "dog" / "a.wav"), tone(1.0, RATE), RATE)
    err = one_line_error(capsys, ["prepare", "--input", str(tmp_path / "clips"),
                                  "--split-column", "fold", "--output", str(tmp_path / "o")])
    assert "--split-column reads a manifest; it applies only with --manifest" in err
    manifest = with_rows(tmp_path, ESC50_ROWS)
    err = one_line_error(capsys, ["prepare", "--manifest", manifest, "--audio-root",
                                  str(tmp_path / "nope"), "--output", str(tmp_path / "o")]
                         + ESC50_FLAGS[:4])
    assert "--audio-root" in err and "is not a folder" in err
    # --audio-root moves where `..` may lead, and the error says so
    manifest = with_rows(tmp_path, [("../x.wav",) + ESC50_ROWS[0][1:]])
    err = one_line_error(capsys, ["prepare", "--manifest", manifest, "--audio-root",
                                  str(tmp_path / "clips"), "--output", str(tmp_path / "o")]
                         + ESC50_FLAGS[:4])
    assert "'../x.wav' escapes --audio-root" in err


def test_validation_share_is_needed_when_no_validation_values(tmp_path):
    manifest = with_rows(tmp_path, ESC50_ROWS)
    with pytest.raises(UserError, match="--split gives train and validation no share"):
        corpus.read_manifest(manifest, columns=corpus.ManifestColumns(
            "filename", "category", split="fold", test_values=("5",)), fractions=(0, 0, 1))


@pytest.mark.parametrize("command", ["prepare", "evaluate"])
def test_label_column_keeps_its_raven_default_with_annotations(command):
    """One --label-column: the Raven column with --annotations (default Annotation), the
    manifest's label column with --manifest (default label)."""
    from earmark.commands import evaluate
    from earmark.pipelines import flags, prepare_flags
    parser, more = ((prepare_flags.build_arg_parser(), ["--output", "o"]) if command == "prepare"
                    else (evaluate.build_arg_parser(), ["--model", "m"]))
    for argv, expected in ((["--input", "r", "--annotations", "t"], "Annotation"),
                           (["--manifest", "m.csv"], "label"),
                           (["--manifest", "m.csv", "--label-column", "category"], "category"),
                           (["--input", "r", "--annotations", "t", "--label-column", "Species"],
                            "Species")):
        args = parser.parse_args(argv + more)
        flags.resolve_label_column(args)
        assert args.label_column == expected, argv


def test_evaluate_and_label_read_the_same_columns(esc50_run):
    """`earmark evaluate --manifest` reads the columns too, and with --split-column only the
    rows of --test-values; `earmark label --manifest` takes --path-column and --audio-root."""
    from earmark.commands import evaluate
    from earmark.pipelines import label, label_flags
    root, manifest, _ = esc50_run
    args = evaluate.build_arg_parser().parse_args(
        ["--model", "m", "--manifest", manifest, "--audio-root", str(root / "audio")]
        + ESC50_FLAGS[:4] + ["--split-column", "fold", "--test-values", "5"])
    from earmark.pipelines import flags
    flags.resolve_label_column(args)
    rows = evaluate.labeled_clips(args.manifest, None, corpus.ManifestColumns.from_args(args),
                                  args.audio_root)
    assert [(os.path.basename(p), label_) for p, label_ in rows] == \
        [("5-107-A-0.wav", "dog"), ("5-108-A-1.wav", "rooster")]
    assert all(os.path.exists(p) for p, _ in rows)
    args = label_flags.build_arg_parser().parse_args(
        ["--model", "m", "--manifest", manifest, "--path-column", "filename",
         "--audio-root", str(root / "audio"), "--output", "o"])
    recs, matched, _ = label._list_source(args)
    assert len(matched) == len(ESC50_ROWS) and all(os.path.exists(r.path) for r in recs)
    assert [r.key for r in recs] == [row[0] for row in ESC50_ROWS]
    with pytest.raises(UserError, match="no 'path' column: name the path column with "
                                        "--path-column"):
        label._list_source(argparse.Namespace(manifest=manifest, audio_root=None))
