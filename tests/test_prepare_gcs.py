"""`earmark prepare` from gs://bucket/corpus to gs://bucket/out on a local GCS emulator
gives the same output as a local run (examples, stats.json, features.json labels)."""
import os
import shutil

import pytest

from earmark.pipelines import prepare
from tests.prepared import load_json, read_dead_letter, read_examples
from tests.shared import shared_path

pytestmark = pytest.mark.slow  # Beam pipelines end to end: the full suite, not the quick loop

BUCKET = "bucket"
PER_LABEL = 20
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, request):
    """40 snoring clips (20 per label) as a local <label>/<file> folder with a manifest,
    uploaded with the same layout to gs://bucket/corpus."""
    snoring = shared_path("data", "snoring")
    gcs_emulator = request.getfixturevalue("gcs_emulator")  # only once the data is there
    local = tmp_path_factory.mktemp("corpus")
    rows = ["path,label"]
    for label in ("not_snore", "snore"):
        os.makedirs(local / label)
        for name in sorted(os.listdir(os.path.join(snoring, label)))[:PER_LABEL]:
            shutil.copy(os.path.join(snoring, label, name), local / label / name)
            rows.append(f"{label}/{name},{label}")
    (local / "manifest.csv").write_text("\n".join(rows) + "\n")

    client = gcs_emulator.client()
    bucket = client.create_bucket(BUCKET)
    for dirpath, _, names in os.walk(local):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), local).replace(os.sep, "/")
            bucket.blob(f"corpus/{rel}").upload_from_filename(os.path.join(dirpath, name))
    return str(local), client


def download(client, prefix, dest):
    """Mirror gs://bucket/<prefix>/... into the local folder `dest`."""
    blobs = list(client.list_blobs(BUCKET, prefix=prefix.rstrip("/") + "/"))
    assert blobs, f"nothing under gs://{BUCKET}/{prefix}"
    for blob in blobs:
        rel = blob.name[len(prefix.rstrip("/")) + 1:]
        if not rel or rel.endswith("/"):
            continue
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        blob.download_to_filename(path)
    return dest


def comparable(out):
    """Examples per split as sorted tuples, without `source` (a local path vs a gs:// URI)."""
    per_split = {}
    for split in SPLITS:
        rows = [tuple((k, v.tobytes() if hasattr(v, "tobytes") else v)
                      for k, v in sorted(r.items()) if k != "source")
                for r in read_examples(out, split)]
        per_split[split] = sorted(rows)
    return per_split


def assert_same_output(local_out, gcs_out, gcs_source_prefix, stray_files=0):
    """`stray_files`: files in the corpus root, outside any label folder (manifest.csv),
    counted and dead-lettered as no_label_folder."""
    stats = load_json(local_out, "stats.json")
    assert stats["files_ok"] == 2 * PER_LABEL
    assert stats["files_matched"] == 2 * PER_LABEL + stray_files
    assert stats["failures_by_reason"] == ({"no_label_folder": stray_files} if stray_files else {})
    gcs_stats = load_json(gcs_out, "stats.json")
    assert {k: v for k, v in gcs_stats.items() if k != "shards"} == \
        {k: v for k, v in stats.items() if k != "shards"}
    local_features, gcs_features = (load_json(local_out, "features.json"),
                                    load_json(gcs_out, "features.json"))
    assert gcs_features["labels"] == local_features["labels"] == ["not_snore", "snore"]
    assert gcs_features["feature_config"] == local_features["feature_config"]
    assert gcs_features["feature_config_hash"] == local_features["feature_config_hash"]
    dead = [(os.path.basename(d["path"]), d["reason"]) for d in read_dead_letter(local_out)]
    assert dead == [(os.path.basename(d["path"]), d["reason"]) for d in read_dead_letter(gcs_out)]
    assert dead == ([("manifest.csv", "no_label_folder")] if stray_files else [])
    local_rows, gcs_rows = comparable(local_out), comparable(gcs_out)
    assert sum(map(len, local_rows.values())) == stats["patches"] > 0
    for split in SPLITS:
        assert gcs_rows[split] == local_rows[split], f"{split} differs"
    sources = {r["source"] for split in SPLITS for r in read_examples(gcs_out, split)}
    assert sources and all(s.startswith(gcs_source_prefix) for s in sources), sorted(sources)[:3]


def run_prepare(source_flag, source, output):
    prepare.run([source_flag, source, "--output", output, "--no_auth"])


@pytest.mark.parametrize("source_flag", ["--input", "--manifest"])
def test_prepare_from_gcs_equals_local_run(corpus, source_flag, tmp_path):
    local_corpus, client = corpus
    name = "dir" if source_flag == "--input" else "manifest"
    local_source = (local_corpus if source_flag == "--input"
                    else os.path.join(local_corpus, "manifest.csv"))
    gcs_source = (f"gs://{BUCKET}/corpus" if source_flag == "--input"
                  else f"gs://{BUCKET}/corpus/manifest.csv")
    local_out = str(tmp_path / "local_out")
    run_prepare(source_flag, local_source, local_out)
    run_prepare(source_flag, gcs_source, f"gs://{BUCKET}/out-{name}")
    gcs_out = download(client, f"out-{name}", str(tmp_path / "gcs_out"))
    assert_same_output(local_out, gcs_out, f"gs://{BUCKET}/corpus/")


def test_no_auth_connects_to_gcs_anonymously_without_looking_for_credentials(monkeypatch):
    """Beam's GCS client looks for default credentials even under `--no_auth` (about 21 s
    of retries where there are none); the pipelines' options make the flag mean anonymous."""
    import google.auth
    import google.auth.exceptions
    from apache_beam.internal.gcp import auth
    from earmark.pipelines import fs

    lookups = []

    def default(*args, **kwargs):
        lookups.append(args)
        raise google.auth.exceptions.DefaultCredentialsError("none here")
    monkeypatch.setattr(google.auth, "default", default)
    monkeypatch.setattr(auth._Credentials, "_credentials_init", False)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    options = fs.pipeline_options(["--no_auth"], save_main_session=False)
    assert auth.get_service_credentials(options) is None and lookups == []
