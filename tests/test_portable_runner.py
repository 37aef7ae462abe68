"""`earmark prepare` and `earmark label` through Beam's portable Fn API path (GitHub issue 12,
item 7): the path Flink, Spark and Dataflow Runner v2 take, where the pipeline is translated
to a runner-neutral proto and every DoFn runs in an SDK worker in another process, fed over
gRPC. Here: `--runner PortableRunner --job_endpoint embed` (the job service inside the
launcher) and `--environment_type EXTERNAL`, workers started by a worker pool this test runs
in its own process. Each command also runs on DirectRunner; the outputs must be the same
bytes, file for file, but for what names the run (run ids, wall times; see `comparable`).

What this does not test: a real Flink or Spark cluster, or a Docker worker environment
(docs/runners.md says so too). Commands run as real `earmark` processes with a time limit:
a worker that cannot start (no Beam on its PATH) leaves the job waiting for ever."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from earmark import cli
from earmark.model.errors import UserError
from earmark.pipelines import fs
from tests.audio_fixtures import tone, write
from tests.fixtures import files_under, make_corpus

pytestmark = pytest.mark.slow  # Beam pipelines end to end: the full suite, not the quick loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_S = 180  # per command (~15 s when it works): a hung job fails, not stalls, the suite
POOL_START_S = 60
RATE = 16000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory):
    """A Beam worker pool (`worker_pool_main`) on a free local port → a `Pool`. It starts
    each SDK worker as `python` from PATH: this interpreter's bin/ (the venv) goes first.
    Its own session (process group), killed whole at teardown with the workers it started;
    it runs in a folder of its own, so workers import earmark as installed, not from the cwd."""
    port = free_port()
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    log_path = tmp_path_factory.mktemp("worker_pool") / "pool.log"
    log = open(log_path, "wb")
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
         "--service_port", str(port)],
        env=env, cwd=str(log_path.parent), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.time() + POOL_START_S
        while True:
            assert pool.poll() is None, f"worker pool exited: {log_path.read_text()[-2000:]}"
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, f"worker pool not listening after {POOL_START_S} s"
                time.sleep(0.2)
        yield Pool(port, log_path)
    finally:
        try:
            os.killpg(pool.pid, signal.SIGKILL)  # the pool and the workers it started
        except ProcessLookupError:
            pass
        pool.wait()
        log.close()


class Pool:
    def __init__(self, port, log_path):
        self.port, self.log_path = port, log_path

    def flags(self):
        return ["--runner", "PortableRunner", "--job_endpoint", "embed",
                "--environment_type", "EXTERNAL", "--environment_config", f"localhost:{self.port}"]

    def workers_started(self) -> int:
        """SDK workers the pool has started so far (it logs each one)."""
        return self.log_path.read_text(errors="replace").count("Starting worker with command")

    def run(self, *args):
        """`earmark ARGS` on the portable runner; its steps must have run in the pool's
        workers (not in the launcher, as LOOPBACK would)."""
        before = self.workers_started()
        proc = earmark(*args, *self.flags())
        assert self.workers_started() > before, self.log_path.read_text()[-2000:]
        return proc


def direct(*args):
    """`earmark ARGS` in this process, on DirectRunner (the default)."""
    assert cli.main(list(args)) == 0


def earmark(*args):
    proc = subprocess.run([sys.executable, "-m", "earmark", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def comparable(files: dict) -> dict:
    """The outputs as they must match across runners. Left out, as each run differs even on
    one runner: `run_id` in earmark_outputs.json (a new id per run); run.json's `wall_s` and
    `audio_hours_per_wall_hour` (timings). Everything else, byte for byte (dead-letter
    details included: model/audio.py drops the address libsndfile's errors name): TFRecord shards,
    features.json, stats.json, recordings.jsonl, segments.csv/jsonl, Raven and Audacity
    tables, score files, sources.csv, the rest of run.json and the manifest."""
    out = dict(files)
    manifest = json.loads(out.pop("earmark_outputs.json"))
    assert manifest.pop("run_id") and manifest["complete"] is True
    out["earmark_outputs.json"] = manifest
    if "run.json" in out:
        run = json.loads(out.pop("run.json"))
        for key in ("wall_s", "audio_hours_per_wall_hour"):
            run.pop(key)
        out["run.json"] = run
    return out


def assert_same_outputs(on_direct, on_portable):
    a, b = comparable(files_under(on_direct)), comparable(files_under(on_portable))
    assert sorted(a) == sorted(b)
    differ = sorted(name for name in a if a[name] != b[name])
    assert not differ, f"differ between DirectRunner and PortableRunner: {differ}"


def test_prepare_on_the_portable_runner_writes_what_direct_does(worker_pool, tmp_path):
    """A class-folder corpus: tones of two rates and channel counts, and a broken file."""
    root = tmp_path / "corpus"
    for label, hz in (("low", 440.0), ("high", 3000.0)):
        (root / label).mkdir(parents=True)
        for i in range(3):
            write(str(root / label / f"{i}.wav"), tone(2.0 + i, RATE, freq_hz=hz), RATE)
    write(str(root / "high" / "stereo.flac"), tone(2.5, 44100, 2, 3000.0), 44100, "FLAC", "PCM_24")
    (root / "low" / "broken.wav").write_bytes(b"RIFF not really audio")
    portable = str(tmp_path / "portable")
    direct("prepare", "--input", str(root), "--output", str(tmp_path / "direct"))
    proc = worker_pool.run("prepare", "--input", str(root), "--output", portable)
    assert "8 matched, 7 ok, 1 failed" in proc.stdout
    shards = [n for n in os.listdir(portable) if n.endswith(".tfrecord.gz")]
    assert shards, os.listdir(portable)
    assert_same_outputs(str(tmp_path / "direct"), portable)


def test_label_on_the_portable_runner_writes_what_direct_does(worker_pool, tiny_model, tmp_path):
    """tests/fixtures.py's corpus: band noise the tiny model knows, a name that needs
    escaping, a stereo FLAC in a sub-folder, a broken file; every format, the score files."""
    root = make_corpus(str(tmp_path / "corpus"))
    args = ["label", "--model", tiny_model, "--input", root,
            "--formats", "csv,raven,audacity,jsonl", "--scores"]
    portable = str(tmp_path / "portable")
    direct(*args, "--output", str(tmp_path / "direct"))
    worker_pool.run(*args, "--output", portable)
    with open(os.path.join(portable, "run.json")) as f:
        run = json.load(f)
    # counts come from the pipeline's own outputs, not runner metrics: right on any runner
    assert (run["files_matched"], run["files_labeled"], run["files_failed"]) == (4, 3, 1)
    assert len(run["segments_per_label"]) == 2  # both classes found: a real labeling
    assert run["failures_by_reason"] == {"decode_error": 1}
    assert os.path.getsize(os.path.join(portable, "segments.csv")) > 0
    assert_same_outputs(str(tmp_path / "direct"), portable)


# --- runner checks: portable runners and their flags are accepted ---------------------------

@pytest.mark.parametrize("runner,flags", [
    ("PortableRunner", ["--job_endpoint", "localhost:8099", "--environment_type", "EXTERNAL",
                        "--environment_config", "localhost:50000"]),
    ("portable", ["--job_endpoint", "embed"]),
    ("FlinkRunner", ["--flink_master", "flink-jm:8081", "--parallelism", "4",
                     "--environment_type", "DOCKER", "--environment_config", "earmark-worker:1"]),
    ("flink", ["--flink_version", "1.18", "--flink_submit_uber_jar"]),
    ("SparkRunner", ["--spark_master_url", "spark://spark-master:7077",
                     "--environment_type", "PROCESS",
                     "--environment_config", '{"command": "/opt/apache/beam/boot"}']),
    ("spark", ["--spark_rest_url", "http://spark-master:6066", "--spark_submit_uber_jar"]),
])
def test_portable_runners_and_their_flags_are_accepted(runner, flags):
    from apache_beam.options.pipeline_options import PortableOptions
    fs.check_beam_flags(["--runner", runner, *flags], "earmark prepare")
    options = fs.pipeline_options(["--runner", runner, *flags], save_main_session=True)
    assert not fs.single_process(options)  # workers are other processes: no shared progress
    if "--environment_type" in flags:
        assert options.view_as(PortableOptions).environment_type == \
            flags[flags.index("--environment_type") + 1]


def test_an_unknown_runner_or_flag_is_still_a_one_line_user_error():
    with pytest.raises(UserError) as e:
        fs.pipeline_options(["--runner", "FlinkRuner"], save_main_session=True)
    assert "--runner FlinkRuner: not an Apache Beam runner" in str(e.value)
    assert "FlinkRunner" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="unknown flag --flink_mastr"):
        fs.check_beam_flags(["--runner", "FlinkRunner", "--flink_mastr", "x:8081"], "earmark label")
