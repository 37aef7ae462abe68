"""infra/ against the code it packages: flex template metadata vs the CLI's own argparse
flags (both directions), the template launcher's flag conversion, the Dockerfiles' pins vs
requirements.lock, and the Terraform (parsed with python-hcl2): nightly incremental label
launch, variables, least-privilege worker account. Offline, no cloud calls."""
import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess

import pytest

from earmark.pipelines import embed, label, label_formats, prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFRA = os.path.join(ROOT, "infra")
PIPELINES = {"prepare": prepare, "label": label, "embed": embed}

# FlexTemplateRuntimeEnvironment's fields (Dataflow REST v1b3).
RUNTIME_ENVIRONMENT_FIELDS = {
    "additionalExperiments", "additionalPipelineOptions", "additionalUserLabels",
    "autoscalingAlgorithm", "diskSizeGb", "dumpHeapOnOom", "enableLauncherVmSerialPortLogging",
    "enableStreamingEngine", "flexrsGoal", "ipConfiguration", "kmsKeyName", "launcherMachineType",
    "machineType", "maxWorkers", "network", "numWorkers", "saveHeapDumpsToGcsPath",
    "sdkContainerImage", "serviceAccountEmail", "stagingLocation", "streamingMode", "subnetwork",
    "tempLocation", "workerRegion", "workerZone", "zone"}


def load_launcher():
    spec = importlib.util.spec_from_file_location(
        "earmark_flex_launch", os.path.join(INFRA, "templates", "launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launch = load_launcher()


def metadata(pipeline: str) -> dict:
    with open(os.path.join(INFRA, "templates", pipeline, "metadata.json")) as f:
        return json.load(f)


def parameters(pipeline: str) -> dict:
    return {p["name"]: p for p in metadata(pipeline)["parameters"]}


def name_of(action) -> str:
    """`--min-duration` -> `min_duration`: the parameter name for a CLI flag."""
    flag = max(action.option_strings, key=len)
    assert flag.startswith("--"), f"{action.option_strings}: no --long flag"
    return flag[2:].replace("-", "_")


def cli_actions(pipeline: str) -> dict:
    """Template parameter name -> argparse action, walked here from build_arg_parser()._actions
    (not through the launcher, so a launcher that skipped a flag would not hide it)."""
    return {name_of(a): a for a in PIPELINES[pipeline].build_arg_parser()._actions
            if not isinstance(a, argparse._HelpAction)}


def exclusive_required_groups(pipeline: str) -> list:
    parser = PIPELINES[pipeline].build_arg_parser()
    return [[name_of(a) for a in g._group_actions]
            for g in parser._mutually_exclusive_groups if g.required]


def cli_default_text(action):
    """The CLI default as a template parameter value, or None where there is none to state."""
    if isinstance(action, argparse._StoreTrueAction):
        return "false"
    if action.default is None or action.default == []:
        return None
    return str(action.default)


# --- flex template metadata vs the CLI ---------------------------------------------------

@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_metadata_parameters_are_exactly_the_cli_flags(pipeline):
    flags, params = set(cli_actions(pipeline)), set(parameters(pipeline))
    missing = sorted(flags - params)
    extra = sorted(params - flags)
    assert not missing, (f"infra/templates/{pipeline}/metadata.json lacks a parameter for CLI flag(s) "
                         + ", ".join(max(cli_actions(pipeline)[n].option_strings, key=len) for n in missing))
    assert not extra, (f"infra/templates/{pipeline}/metadata.json has parameter(s) {extra} that "
                       f"`earmark {pipeline}` does not define")


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_metadata_required_mirrors_the_cli(pipeline):
    params, actions = parameters(pipeline), cli_actions(pipeline)
    in_groups = {name for group in exclusive_required_groups(pipeline) for name in group}
    for name, action in actions.items():
        is_optional = params[name].get("isOptional", False)  # Dataflow's default: required
        if name in in_groups:
            assert is_optional, f"{pipeline}: {name} is one of a required either/or group: isOptional must be true"
        else:
            assert is_optional == (not action.required), (
                f"{pipeline}: {name}: isOptional={is_optional} but the CLI's "
                f"{max(action.option_strings, key=len)} has required={action.required}")
    for group in exclusive_required_groups(pipeline):
        for name in group:
            help_text = params[name]["helpText"].lower()
            assert "one of" in help_text and all(other in help_text for other in group), (
                f"{pipeline}: {name}'s helpText must say it is one of {' or '.join(group)}")


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_metadata_is_well_formed(pipeline):
    meta = metadata(pipeline)
    assert meta["name"] and meta["description"]
    for p in meta["parameters"]:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", p["name"]), (
            f"{pipeline}: parameter name {p['name']!r}: letters, digits and underscores only")
        assert p.get("label") and p.get("helpText"), f"{pipeline}: {p['name']}: label and helpText are required"
        for regex in p.get("regexes", []):
            re.compile(regex)
    assert len(meta["parameters"]) == len(parameters(pipeline)), f"{pipeline}: duplicate parameter names"


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_metadata_defaults_choices_and_regexes_agree_with_the_cli(pipeline):
    params = parameters(pipeline)
    for name, action in cli_actions(pipeline).items():
        p, default = params[name], cli_default_text(action)
        if "defaultValue" in p:
            assert p["defaultValue"] == default, (
                f"{pipeline}: {name}: defaultValue {p['defaultValue']!r}, CLI default {default!r}")
        if action.choices:
            assert p.get("paramType") == "ENUM", f"{pipeline}: {name} has CLI choices: paramType must be ENUM"
            assert [o["value"] for o in p["enumOptions"]] == list(action.choices), (
                f"{pipeline}: {name}: enumOptions differ from the CLI's choices {list(action.choices)}")
        if isinstance(action, argparse._StoreTrueAction):
            assert p.get("paramType") == "BOOLEAN", f"{pipeline}: {name} is a CLI switch: paramType must be BOOLEAN"
        for regex in p.get("regexes", []):
            if default is not None:
                assert re.fullmatch(regex, default), (
                    f"{pipeline}: {name}: regex {regex!r} rejects the CLI default {default!r}")


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_metadata_paths_must_be_gcs(pipeline):
    for name in ("input", "manifest", "output", "model"):
        p = parameters(pipeline).get(name)
        if p is None:
            continue
        assert p.get("regexes"), f"{pipeline}: {name} needs a gs:// regex"
        regex = p["regexes"][0]
        assert re.fullmatch(regex, "gs://bucket/folder/file.csv"), f"{pipeline}: {name}: rejects a gs:// path"
        assert not re.fullmatch(regex, "/home/me/corpus"), f"{pipeline}: {name}: accepts a local path"


def test_label_formats_regex_accepts_every_format():
    regex = parameters("label")["formats"]["regexes"][0]
    for fmt in label_formats.FORMATS:
        assert re.fullmatch(regex, fmt), f"formats regex rejects {fmt!r}"
    assert re.fullmatch(regex, ",".join(label_formats.FORMATS))
    assert not re.fullmatch(regex, "csv,pdf")


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_metadata_leaves_beam_options_to_dataflow(pipeline):
    from apache_beam.options.pipeline_options import PipelineOptions
    beam_options = set(PipelineOptions([]).get_all_options(retain_unknown_options=False))
    clash = sorted(set(parameters(pipeline)) & beam_options)
    assert not clash, f"{pipeline}: {clash} are Beam pipeline options: Dataflow supplies those"


@pytest.mark.skipif(not shutil.which("gcloud"), reason="gcloud is not installed")
@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_gcloud_accepts_the_metadata(pipeline, tmp_path):
    """gcloud's own template-metadata validation, offline (--print-only writes nothing)."""
    result = subprocess.run(
        ["gcloud", "dataflow", "flex-template", "build", f"gs://bucket/{pipeline}.json",
         "--image=example.com/earmark:0", "--sdk-language=PYTHON", "--print-only", "--project=p",
         f"--metadata-file={os.path.join(INFRA, 'templates', pipeline, 'metadata.json')}"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "CLOUDSDK_CONFIG": str(tmp_path), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    spec = json.loads(result.stdout[result.stdout.index("{"):])
    assert spec["metadata"] == metadata(pipeline), "gcloud changed or dropped part of the metadata"


# --- the flex template launcher ---------------------------------------------------------

def parse_launched(pipeline: str, template_argv: list):
    parser = PIPELINES[pipeline].build_arg_parser()
    return parser.parse_known_args(launch.to_cli_argv(template_argv, parser))


def test_launcher_converts_template_parameters_to_cli_flags():
    args, beam_args = parse_launched("label", [
        "--model=gs://b/m", "--input=gs://b/nights/*.flac", "--output=gs://b/labels",
        "--min_duration=0.5", "--max_gap", "0.25", "--incremental=true", "--scores=false",
        "--threshold=snore=0.8,0.6", "--formats=csv,jsonl", "--hop_seconds=",
        "--runner=DataflowRunner", "--temp_location=gs://b/tmp", "--max_num_workers=4"])
    assert (args.model, args.input, args.output) == ("gs://b/m", "gs://b/nights/*.flac", "gs://b/labels")
    assert ([o.value for o in args.min_duration], [o.value for o in args.max_gap]) == ([0.5], [0.25])
    assert args.incremental is True and args.scores is False
    assert [(o.label, o.value) for o in args.threshold] == [("snore", 0.8), ("", 0.6)]
    assert args.formats == ["csv", "jsonl"]
    assert args.hop_seconds is None  # empty value: the CLI default
    assert beam_args == ["--runner=DataflowRunner", "--temp_location=gs://b/tmp", "--max_num_workers=4"]


def test_launcher_runs_the_installed_pipeline_outside_the_repository(tmp_path):
    """The template's launch.py runs earmark.pipelines.<name> from the installed package (its
    working directory holds no `pipelines/` folder): a missing input is the pipeline's own
    user error, not an ImportError."""
    import sys
    result = subprocess.run(
        [sys.executable, os.path.join(INFRA, "templates", "launch.py"),
         f"--input={tmp_path / 'absent'}", f"--output={tmp_path / 'out'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "EARMARK_PIPELINE": "prepare"})
    assert result.returncode != 0
    assert "Error" in result.stderr and "does not exist" in result.stderr, result.stderr[-2000:]
    assert "ModuleNotFoundError" not in result.stderr


def test_launcher_turns_switches_into_flags():
    parser = label.build_arg_parser()
    assert launch.to_cli_argv(["--incremental=True"], parser) == ["--incremental"]
    assert launch.to_cli_argv(["--incremental=false", "--scores=0"], parser) == []
    assert launch.to_cli_argv(["--incremental"], parser) == ["--incremental"]
    assert launch.to_cli_argv(["--min_duration=0.5"], parser) == ["--min-duration", "0.5"]
    with pytest.raises(SystemExit, match="expected true or false"):
        launch.to_cli_argv(["--incremental=maybe"], parser)
    with pytest.raises(SystemExit, match="needs a value"):
        launch.to_cli_argv(["--output"], parser)


SAMPLE_VALUES = {"memory_budget": "2000000000", "split": "70/15/15", "formats": "csv", "threshold": "0.7", "base": "vgg16",
                 "smoothing": "3", "min_duration": "0.5", "max_gap": "0.5", "extend": "0.5", "min_overlap": "0.5",
                 "low_threshold": "0.3"}


def sample_value(param: dict) -> str:
    if param["name"] in SAMPLE_VALUES:
        return SAMPLE_VALUES[param["name"]]
    if param.get("paramType") == "BOOLEAN":
        return "true"
    if param.get("enumOptions"):
        return param["enumOptions"][-1]["value"]
    if param.get("paramType") == "NUMBER":
        return "3"
    return "gs://b/x"


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_launcher_delivers_every_metadata_parameter_to_the_cli(pipeline):
    parser = PIPELINES[pipeline].build_arg_parser()
    actions = launch.cli_actions(parser)
    groups = exclusive_required_groups(pipeline)  # e.g. input|manifest; embed's model|base
    for name, param in parameters(pipeline).items():
        value = sample_value(param)
        assert not any(re.fullmatch(r, value) is None for r in param.get("regexes", [])), (name, value)
        args, beam_args = parser.parse_known_args(
            launch.to_cli_argv([f"--{name}={value}"], parser)
            + [f"--{group[0]}=gs://b/in" for group in groups if name not in group]
            + [f"--{n}=gs://b/r" for n, a in actions.items() if a.required and n != name])
        assert beam_args == [], f"{pipeline}: --{name} did not reach a CLI flag: {beam_args}"
        parsed = getattr(args, actions[name].dest)
        if isinstance(parsed, list):  # label's post-processing overrides keep the text given
            parsed = [getattr(v, "text", v) for v in parsed]
        expected = {"true": True}.get(value, value)
        assert parsed in (expected, [value]) or str(parsed) in (value, value + ".0"), (name, parsed)


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_launcher_knows_every_cli_flag(pipeline):
    known, flags = set(launch.cli_actions(PIPELINES[pipeline].build_arg_parser())), set(cli_actions(pipeline))
    assert known == flags, f"{pipeline}: the launcher misses {sorted(flags - known)}"


def test_every_pipeline_has_a_launcher_an_image_and_a_template_spec():
    """Each PIPELINES entry: launch.py runs it, the Dockerfile accepts it, Cloud Build builds
    and pushes its template image, and Terraform names where its template spec goes."""
    assert set(launch.PIPELINES) == set(PIPELINES)
    dockerfile, cloudbuild = read("infra", "templates", "Dockerfile"), read("infra", "cloudbuild.yaml")
    outputs = {k for block in TF["output"] for k in block}
    for pipeline in PIPELINES:
        assert f'"$EARMARK_PIPELINE" = {pipeline}' in dockerfile, f"Dockerfile refuses PIPELINE={pipeline}"
        assert f'"PIPELINE={pipeline}"' in cloudbuild, f"cloudbuild.yaml builds no {pipeline} template image"
        assert cloudbuild.count(f"earmark-{pipeline}-template:${{_TAG}}") == 2, (
            f"cloudbuild.yaml must tag and push earmark-{pipeline}-template")
        assert resolve(locals_()[f"{pipeline}_template_spec"]).endswith(f"/templates/{pipeline}.json")
        assert f"{pipeline}_template_spec" in outputs, f"infra/terraform lacks output {pipeline}_template_spec"


def test_launcher_needs_a_pipeline_name(monkeypatch):
    monkeypatch.delenv("EARMARK_PIPELINE", raising=False)
    with pytest.raises(SystemExit, match="EARMARK_PIPELINE"):
        launch.main(["--output=gs://b/o"])


# --- images --------------------------------------------------------------------------------

def read(*parts) -> str:
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def lock_version(package: str) -> str:
    return re.search(rf"^{re.escape(package)}==(\S+)$", read("requirements.lock"), re.M).group(1)


def test_sdk_image_matches_the_lock_and_install_venv():
    dockerfile = read("infra", "sdk", "Dockerfile")
    beam = lock_version("apache-beam")
    assert re.search(rf"^FROM apache/beam_python3\.11_sdk:{re.escape(beam)}$", dockerfile, re.M), (
        f"infra/sdk/Dockerfile must start FROM apache/beam_python3.11_sdk:{beam} (requirements.lock)")
    assert "-r requirements.lock" in dockerfile
    no_deps = re.search(r"--no-deps --compile-bytecode (.+)$", read(".ci", "install-venv"), re.M).group(1)
    for pin in no_deps.split():
        assert pin in dockerfile, f"infra/sdk/Dockerfile lacks {pin} (installed --no-deps by .ci/install-venv)"
    assert "python311-template-launcher-base" in read("infra", "templates", "Dockerfile")


# --- Terraform -----------------------------------------------------------------------------

def terraform() -> dict:
    """Every .tf file of infra/terraform, parsed and merged by top-level key."""
    import hcl2
    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False,
                                        explicit_blocks=False)
    folder, merged = os.path.join(INFRA, "terraform"), {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".tf"):
            with open(os.path.join(folder, name)) as f:
                for key, value in hcl2.load(f, serialization_options=options).items():
                    merged.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return merged


TF = terraform()


def resources(kind: str) -> dict:
    return {name: body for block in TF["resource"] for k, named in block.items() if k == kind
            for name, body in named.items()}


def locals_() -> dict:
    return {k: v for block in TF["locals"] for k, v in block.items()}


def resolve(value: str) -> str:
    """Substitute ${local.NAME} references (recursively) with their definitions."""
    defined = locals_()
    for _ in range(10):
        value = re.sub(r"\$\{local\.(\w+)\}", lambda m: str(defined[m.group(1)]), value)
    return value


def first(block):
    """A nested block as python-hcl2 gives it: a list of one dict (or the dict)."""
    return block[0] if isinstance(block, list) else block


def scheduler_job() -> dict:
    jobs = resources("google_cloud_scheduler_job")
    assert len(jobs) == 1, f"expected one google_cloud_scheduler_job, found {sorted(jobs)}"
    return next(iter(jobs.values()))


def launch_parameter() -> dict:
    """launchParameter of the local the scheduler job's body encodes."""
    body = first(scheduler_job()["http_target"])["body"]
    name = re.fullmatch(r"\$\{base64encode\(jsonencode\(local\.(\w+)\)\)\}", body)
    assert name, f"the body must be base64encode(jsonencode(local.NAME)), got {body!r}"
    return locals_()[name.group(1)]["launchParameter"]


def test_scheduler_job_posts_the_label_launch_nightly():
    job = scheduler_job()
    target = first(job["http_target"])
    assert target["http_method"] == "POST"
    assert target["uri"] == ("https://dataflow.googleapis.com/v1b3/projects/${var.project}"
                             "/locations/${var.region}/flexTemplates:launch")
    assert job["schedule"] == "${var.schedule}"
    assert first(target["oauth_token"])["service_account_email"] == "${google_service_account.scheduler.email}"

    launch_body = launch_parameter()
    spec = resolve(launch_body["containerSpecGcsPath"])
    assert spec.endswith("/label.json") and "prepare" not in spec, f"launches {spec!r}, not the label template"
    params = launch_body["parameters"]
    assert params["incremental"] == "true"
    unknown = sorted(set(params) - set(parameters("label")))
    assert not unknown, f"the launch body sets {unknown}: not parameters of the label template"
    assert {"model", "output"} <= set(params) and ({"input", "manifest"} & set(params))


def test_launch_environment_runs_as_the_worker_on_the_sdk_image():
    env = launch_parameter()["environment"]
    assert {"serviceAccountEmail", "tempLocation", "machineType", "maxWorkers", "sdkContainerImage"} <= set(env)
    assert set(env) <= RUNTIME_ENVIRONMENT_FIELDS, f"unknown environment fields {set(env) - RUNTIME_ENVIRONMENT_FIELDS}"
    assert env["serviceAccountEmail"] == "${google_service_account.worker.email}"
    assert "earmark-sdk" in resolve(env["sdkContainerImage"])
    assert "earmark-sdk" in read("infra", "cloudbuild.yaml")


def test_variables_exist_with_a_nightly_default():
    variables = {k: v for block in TF["variable"] for k, v in block.items()}
    for name in ("project", "region", "schedule", "time_zone", "machine_type", "max_workers",
                 "model_path", "name_prefix"):
        assert name in variables, f"infra/terraform lacks variable {name!r}"
    assert len(variables["schedule"]["default"].split()) == 5, "schedule default: a 5-field cron"


def members_of(kind: str, account: str) -> list:
    ref = f"google_service_account.{account}."
    return [r for r in resources(kind).values() if ref in str(r.get("member", ""))]


def test_worker_account_has_no_project_wide_storage_or_admin_roles():
    forbidden = ("roles/owner", "roles/editor", "roles/storage.")
    for kind in ("google_project_iam_binding", "google_project_iam_policy"):
        assert not resources(kind), f"{kind} replaces others' grants; use google_project_iam_member"
    project_roles = [r["role"] for r in members_of("google_project_iam_member", "worker")]
    assert "roles/dataflow.worker" in project_roles
    bad = [role for role in project_roles if role.startswith(forbidden)]
    assert not bad, f"worker service account has project-wide {bad}"
    corpus_roles = {r["role"] for r in members_of("google_storage_bucket_iam_member", "worker")
                    if "storage_bucket.corpus" in r["bucket"]}
    assert corpus_roles == {"roles/storage.objectViewer"}, f"the corpus is read-only to workers: {corpus_roles}"


def test_scheduler_account_may_launch_as_the_worker():
    roles = {r["role"] for r in members_of("google_project_iam_member", "scheduler")}
    assert roles == {"roles/dataflow.developer"}
    act_as = [r for r in members_of("google_service_account_iam_member", "scheduler")
              if r["role"] == "roles/iam.serviceAccountUser"]
    assert act_as and all("google_service_account.worker" in r["service_account_id"] for r in act_as)


@pytest.mark.skipif(not shutil.which("terraform"), reason="terraform is not installed")
def test_terraform_is_formatted():
    result = subprocess.run(["terraform", "fmt", "-check", "-diff", os.path.join(INFRA, "terraform")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


# --- the launcher end to end: what the nightly scheduler runs, on DirectRunner ---------------

@pytest.mark.slow
def test_launcher_runs_a_real_incremental_label_twice(tmp_path, monkeypatch, capsys):
    """The label template's entry point, given template-style parameters as Cloud Scheduler
    sends them, labels a corpus incrementally: the first night labels every recording
    (the ledger is written by the job's own last step), the second finds nothing new."""
    from earmark.commands import train
    from tests.fixtures import make_corpus, make_prepared, train_args
    prepared = make_prepared(str(tmp_path / "prepared"))
    model_dir = str(tmp_path / "model")
    train.main(train_args(prepared, model_dir, tmp_path / "cache", "--epochs", "2"))
    corpus = make_corpus(str(tmp_path / "corpus"))
    out = tmp_path / "labels"
    params = [f"--model={model_dir}", f"--input={corpus}", f"--output={out}",
              "--incremental=true", "--formats=csv,raven", "--min_duration=0.5", "--max_gap="]
    monkeypatch.setenv("EARMARK_PIPELINE", "label")
    launch.main(params)
    with open(out / "ledger.json") as f:
        ledger_entries = json.load(f)
    with open(out / "run.json") as f:
        summary = json.load(f)
    assert summary["files_matched"] == 4 and summary["files_labeled"] == 3
    assert summary["files_failed"] == 1 and summary["files_new_or_changed"] == 4
    entries = ledger_entries["files"]
    assert sorted(e["status"] for e in entries.values()) == ["failed", "labeled", "labeled", "labeled"]
    assert os.path.exists(out / "segments.csv")
    capsys.readouterr()
    assert launch.main(params) is None  # the second night: nothing new, nothing run
    assert "nothing new" in capsys.readouterr().out
