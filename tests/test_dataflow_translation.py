"""The Beam pipelines build a DataflowRunner job without submitting it (GitHub issue 6, item 4).

`prepare.run` and `label.run` are called as a user would, with `--runner DataflowRunner`
and `--template_location` (a local file), so Beam translates the pipeline, stages its
files on the GCS emulator and writes the job description instead of creating the job. The
test then reads the template and the portable pipeline it names (`pipeline.pb`, staged on
the emulator; with Runner v2 the template has no `steps`) and checks:

* the transforms earmark labels are there;
* a Reshuffle separates file matching from the DoFns that read audio, so Dataflow cannot
  fuse all reading into the one worker that matched the files (checked on the graph: every
  main-input path from the file listing to the reader crosses a Reshuffle's GroupByKey);
* the workers get what was asked for: the `--sdk_container_image`, or the sdist that
  `--setup_file` builds (staged as workflow.tar.gz, holding earmark's packages).

Credentials: DataflowRunner's API client and stager honour `--no_auth`, but Beam's GCS
filesystem (GcsIO) asks `google.auth.default()` regardless, which retries for ~20 s when
there are none; the `anonymous_google_credentials` fixture stubs that one lookup.
`--sdk_location container` (and the default, 'default') stage no Beam SDK tarball, so
nothing is fetched from PyPI.
"""
import io
import json
import os
import sys
import tarfile

import apache_beam as beam
import pytest
from apache_beam.runners.internal import names as beam_names

from tests.dataflow_job import Job, split_gcs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP_PY = os.path.join(REPO, "setup.py")
BUCKET = "dataflow-translation"
IMAGE = "us-docker.pkg.dev/test-project/earmark/sdk:1.0"
LABELS = ["not_snore", "snore"]

PREPARE_TRANSFORMS = {"ListFiles", "ToRecording", "Reshuffle", "DecodeToPatches", "BySplit",
                      "WriteTrain", "WriteValidation", "WriteTest", "WriteDeadLetter", "WriteStats"}
# label's steps are composites (pipelines/label_steps.py): their parts are named STEP/PART
LABEL_TRANSFORMS = {"ListRecordings", "ReadWindows", "Score", "MakeSegments", "WriteSegments"}

DEPENDENCIES = {
    "image": ["--sdk_container_image", IMAGE, "--sdk_location", "container"],
    "setup_file": ["--setup_file", SETUP_PY],
}


@pytest.fixture
def anonymous_google_credentials(monkeypatch):
    """Beam's credential lookup answers at once with anonymous credentials (the GCS
    emulator needs none) instead of retrying google.auth.default() for ~20 s."""
    import google.auth
    from apache_beam.internal.gcp import auth
    from google.auth.credentials import AnonymousCredentials

    calls = []

    def default(*args, **kwargs):
        calls.append(kwargs)
        return AnonymousCredentials(), "test-project"

    monkeypatch.setattr(google.auth, "default", default)
    # Beam caches the first answer per process: forget any earlier one, restore it after
    monkeypatch.setattr(auth._Credentials, "_credentials_init", False)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    return calls


@pytest.fixture(scope="module")
def bucket(gcs_emulator, tmp_path_factory):
    """gs://dataflow-translation with a two-label corpus of short WAVs and a model dir
    holding model.json and a small real model.keras (label.run checks that it is a .keras
    archive before building the pipeline; nothing loads it)."""
    import keras
    from earmark.model.features import FeatureConfig
    from tests.audio_fixtures import encode, tone

    client = gcs_emulator.client()
    b = client.lookup_bucket(BUCKET) or client.create_bucket(BUCKET)
    for i, label in enumerate(LABELS):
        b.blob(f"corpus/{label}/clip{i}.wav").upload_from_string(
            encode(tone(1.0, 16000, freq_hz=300.0 + 200 * i), 16000, "WAV", "PCM_16"))
    b.blob("model/model.json").upload_from_string(json.dumps({
        "model_id": "0123456789ab", "labels": LABELS,
        "feature_config": FeatureConfig().to_dict(), "thresholds": {},
        "base": {"name": "mobilenet_v2", "feature_dim": 8}}))
    keras_path = str(tmp_path_factory.mktemp("model") / "model.keras")
    keras.Sequential([keras.Input((FeatureConfig().patch_samples,)),
                      keras.layers.Dense(len(LABELS))]).save(keras_path)
    b.blob("model/model.keras").upload_from_filename(keras_path)
    return b


def read_gcs(bucket):
    def read(uri):
        name, blob = split_gcs(uri)
        assert name == bucket.name, uri
        return bucket.blob(blob).download_as_bytes()
    return read


def dataflow_args(tmp_path, name, deps):
    return ["--runner", "DataflowRunner", "--project", "test-project", "--region", "us-central1",
            "--temp_location", f"gs://{BUCKET}/tmp",
            "--staging_location", f"gs://{BUCKET}/staging/{name}-{deps}",
            "--template_location", str(tmp_path / f"{name}_template.json"),
            "--no_auth", *DEPENDENCIES[deps]]


def build_prepare(tmp_path, deps):
    from earmark.pipelines import prepare
    result = prepare.run(["--input", f"gs://{BUCKET}/corpus",
                          "--output", f"gs://{BUCKET}/prepared-{deps}",
                          *dataflow_args(tmp_path, "prepare", deps)])
    return result


def build_label(tmp_path, deps, bucket):
    from earmark.pipelines import label
    # a template run executes nothing: label.run must neither wait for nor read outputs
    return label.run(["--model", f"gs://{BUCKET}/model", "--input", f"gs://{BUCKET}/corpus",
                      "--output", f"gs://{BUCKET}/labels-{deps}", "--formats", "csv,raven",
                      *dataflow_args(tmp_path, "label", deps)])


def check_common(job, result, expected_transforms):
    assert result is not None and not result.has_job  # a template: nothing was submitted
    assert job.options["runner"] == "DataflowRunner"
    assert job.options["project"] == "test-project" and job.options["region"] == "us-central1"
    assert job.template["type"] == "JOB_TYPE_BATCH"
    names = set(job.top_level_names())
    assert expected_transforms <= names, f"missing {sorted(expected_transforms - names)}"
    staged = job.staged_artifacts()
    assert "pickled_main_session" in staged  # save_main_session=True reached Beam
    assert set(job.template_packages()) == set(staged)


def check_dependencies(job, deps, read):
    staged = job.staged_artifacts()
    if deps == "image":
        assert job.docker_images() == {IMAGE}
        assert job.template_images() == {IMAGE}
        assert job.options["sdk_container_image"] == IMAGE
        assert "workflow.tar.gz" not in staged
        # the image holds the SDK: no Beam SDK tarball or wheel is staged (or downloaded)
        assert not any(n == beam_names.STAGED_SDK_SOURCES_FILENAME or n.startswith("apache_beam")
                       for n in staged), sorted(staged)
    else:
        assert job.options.get("setup_file") == SETUP_PY
        assert "workflow.tar.gz" in staged, sorted(staged)
        with tarfile.open(fileobj=io.BytesIO(read(staged["workflow.tar.gz"]))) as tar:
            names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
            pkg_info = [m for m in tar.getmembers() if m.name.count("/") == 1
                        and m.name.endswith("/PKG-INFO")]
            assert pkg_info, tar.getnames()[:10]
            meta = tar.extractfile(pkg_info[0]).read().decode()
        assert "Name: earmark" in meta.splitlines()
        assert {"setup.py", "pipelines/prepare.py", "pipelines/label.py", "pipelines/fs.py",
                "model/features.py"} <= names, sorted(names)[:20]
        # no image asked for: Beam's own, for this SDK version and Python
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        images = job.docker_images()
        assert len(images) == 1 and IMAGE not in images
        assert next(iter(images)).endswith(f"beam_python{py}_sdk:{beam.__version__}"), images


@pytest.mark.parametrize("deps", sorted(DEPENDENCIES))
def test_prepare_builds_for_dataflow(bucket, anonymous_google_credentials, tmp_path, deps):
    result = build_prepare(tmp_path, deps)
    read = read_gcs(bucket)
    job = Job(str(tmp_path / "prepare_template.json"), read)
    check_common(job, result, PREPARE_TRANSFORMS)
    assert job.reshuffles() == ["Reshuffle"]
    assert job.produced_by_reshuffle("DecodeToPatches")
    assert job.reshuffle_separates("ListFiles", "DecodeToPatches")
    check_dependencies(job, deps, read)


@pytest.mark.parametrize("deps", sorted(DEPENDENCIES))
def test_label_builds_for_dataflow(bucket, anonymous_google_credentials, tmp_path, deps):
    result = build_label(tmp_path, deps, bucket)
    read = read_gcs(bucket)
    job = Job(str(tmp_path / "label_template.json"), read)
    check_common(job, result, LABEL_TRANSFORMS)
    assert job.reshuffles() == ["ReadWindows/ReshuffleChunks", "ReadWindows/ReshuffleFiles"]
    # files spread before reading headers; chunks spread again before decoding
    assert (job.produced_by_reshuffle("ReadWindows/PlanChunks")
            and job.produced_by_reshuffle("ReadWindows/DecodeChunks"))
    assert job.reshuffle_separates("ListRecordings/ListFiles", "ReadWindows/PlanChunks")
    assert job.reshuffle_separates("ReadWindows/PlanChunks", "ReadWindows/DecodeChunks")
    assert job.reshuffle_separates("ListRecordings/ListFiles", "Score/RunInference")
    check_dependencies(job, deps, read)
    # the run finishes itself on the workers (FinishRun); building the template wrote nothing
    assert not list(bucket.list_blobs(prefix=f"labels-{deps}/run.json"))


EMBED_TRANSFORMS = {"ListRecordings", "ReadWindows", "Embed", "CheckRecordings",
                    "WriteEmbeddings", "FinishRun"}


def test_embed_builds_for_dataflow(bucket, anonymous_google_credentials, tmp_path):
    """`earmark embed` shares label's reading (one container image is enough to show it)."""
    from earmark.pipelines import embed
    result = embed.run(["--model", f"gs://{BUCKET}/model", "--input", f"gs://{BUCKET}/corpus",
                        "--output", f"gs://{BUCKET}/embeddings",
                        *dataflow_args(tmp_path, "embed", "image")])
    read = read_gcs(bucket)
    job = Job(str(tmp_path / "embed_template.json"), read)
    check_common(job, result, EMBED_TRANSFORMS)
    assert job.reshuffle_separates("ListRecordings/ListFiles", "ReadWindows/DecodeChunks")
    assert job.reshuffle_separates("ListRecordings/ListFiles", "Embed/RunInference")
    check_dependencies(job, "image", read)
    assert not list(bucket.list_blobs(prefix="embeddings/embed.json"))


def test_graph_check_tells_fused_from_reshuffled(tmp_path):
    """The Reshuffle check fails on a pipeline that reads right after matching, and its
    side inputs do not count as paths (they are never fused)."""
    from apache_beam.io import fileio
    protos = {}
    for name, reshuffle in (("fused", False), ("reshuffled", True)):
        p = beam.Pipeline()
        matched = p | "MatchFiles" >> fileio.MatchFiles(str(tmp_path / "*.wav"))
        if reshuffle:
            matched = matched | "Reshuffle" >> beam.Reshuffle()
        side = p | "Side" >> beam.Create([1])
        _ = matched | "Read" >> beam.Map(lambda m, s: m, beam.pvalue.AsList(side))
        protos[name] = p.to_runner_api()
    for name, proto in protos.items():
        pb = proto.SerializeToString()
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"environment": {"sdkPipelineOptions": {"options": {
            "pipelineUrl": "gs://x/pipeline.pb"}}}}))
        job = Job(str(path), lambda uri, pb=pb: pb)
        assert job.reshuffle_separates("MatchFiles", "Read") is (name == "reshuffled")
        assert job.produced_by_reshuffle("Read") is (name == "reshuffled")
        assert "Side/Impulse" not in job.upstream("Read")


def test_incremental_label_template_leaves_the_bookkeeping_to_the_job(bucket, anonymous_google_credentials,
                                                                      tmp_path):
    """A scheduled (flex-template) launch only builds the job: the ledger and run.json are
    written by the job's own FinishRun step, so the launch neither fails nor records files
    as labeled before they are."""
    from earmark.pipelines import label
    out = "labels-incremental"
    printed = label.main(["--model", f"gs://{BUCKET}/model", "--input", f"gs://{BUCKET}/corpus",
                          "--output", f"gs://{BUCKET}/{out}", "--incremental",
                          *dataflow_args(tmp_path, "label", "image")])
    assert printed == {}
    job = Job(str(tmp_path / "label_template.json"), read_gcs(bucket))
    assert job.by_name("WriteSegments/FinishRun")
    written = [b.name for b in bucket.list_blobs(prefix=out + "/")]
    assert not [n for n in written if n.endswith(("ledger.json", "run.json"))], written
