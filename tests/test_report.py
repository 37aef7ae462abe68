"""`earmark report`: a real labeling run and a real (tiny) model → one self-contained HTML
page, rendered in headless Chromium through the system chromedriver."""
import csv
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from earmark import report
from model.errors import UserError
from tests.test_train_data import make_prepared, train_args

RATE = 16000
ODD_NAME = "<b>&x.wav"   # must come out escaped everywhere
# the synthetic training classes are bright mel bands: class_0 low (~0.55-1.9 kHz), class_1
# high (~2-4.9 kHz); band noise there is what this tiny model knows
BANDS_HZ = {"class_0": (600.0, 1800.0), "class_1": (2200.0, 4600.0)}


def band_noise(seconds, band_hz, rng, amplitude=0.3):
    """White noise band-passed to band_hz by zeroing FFT bins."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < band_hz[0]) | (freqs > band_hz[1])] = 0
    x = np.fft.irfft(spectrum, n)
    return (amplitude * x / np.abs(x).max()).astype(np.float32)


def recording(parts, rng):
    """[(seconds, label or None)] → a waveform: band noise per label, faint noise between."""
    return np.concatenate([band_noise(s, BANDS_HZ[l], rng) if l else
                           (0.001 * rng.normal(size=int(s * RATE))).astype(np.float32)
                           for s, l in parts])


def make_corpus(root):
    """Three recordings (one with a name that needs escaping, one a stereo FLAC in a
    sub-folder) and one broken file."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "night"), exist_ok=True)
    specs = {"a.wav": [(2, "class_0"), (1.5, None), (2.5, "class_1"), (2, None)],
             ODD_NAME: [(1, None), (3, "class_1"), (1, None)],
             "night/c.flac": [(3, "class_0"), (2, None), (2, "class_1"), (2, "class_0")]}
    for name, parts in specs.items():
        sf.write(os.path.join(root, name), recording(parts, rng), RATE)
    flac = os.path.join(root, "night", "c.flac")
    mono, _ = sf.read(flac, dtype="float32")
    sf.write(flac, np.stack([mono, mono / 2], axis=1), RATE)                 # stereo
    with open(os.path.join(root, "broken.wav"), "wb") as f:
        f.write(b"RIFF not really audio")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A trained model (with evaluation.json), a corpus and a finished `earmark label` run."""
    from model import evaluate, train
    from pipelines import label
    root = tmp_path_factory.mktemp("report")
    prepared = make_prepared(str(root / "prepared"))
    model_dir = str(root / "model")
    train.main(train_args(prepared, model_dir, root / "cache", "--epochs", "4"))
    evaluate.main(["--model", model_dir, "--data", prepared])
    corpus = make_corpus(str(root / "corpus"))
    out = str(root / "labels")
    label.main(["--model", model_dir, "--input", corpus, "--output", out,
                "--formats", "csv,raven,audacity,jsonl", "--scores"])
    return {"root": root, "model": model_dir, "corpus": corpus, "run": out}


@pytest.fixture(scope="module")
def page(built):
    """The report of the run and the model, with the recordings found under --audio-root."""
    path = report.main(["--run", built["run"], "--model", built["model"],
                        "--audio-root", built["corpus"], "--top", "4"])
    with open(path, encoding="utf-8") as f:
        return path, f.read()


def segments(run_dir):
    with open(os.path.join(run_dir, "segments.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_default_output_is_report_html_in_the_run_dir(built, page, capsys):
    path, _ = page
    assert path == os.path.join(built["run"], "report.html")
    report.main(["--model", built["model"]])
    assert capsys.readouterr().out.strip() == f"report: {os.path.join(built['model'], 'report.html')}"


def test_page_is_self_contained(page):
    _, html = page
    for ref in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert ref.startswith(("data:", "#")), ref
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "@import" not in html and "url(" not in html


def test_file_names_are_escaped(page):
    _, html = page
    assert ODD_NAME not in html and "<b>&" not in html
    assert "&lt;b&gt;&amp;x.wav" in html


def test_model_section_names_the_model_that_labeled_the_run(built, page):
    _, html = page
    with open(os.path.join(built["run"], "run.json")) as f:
        model_id = json.load(f)["model_id"]
    assert html.count(f"<td>{model_id}</td>") == 2            # summary and model metrics
    assert "describes another model" not in html


def test_report_html_tables_escape_labels():
    from earmark import report_html as h
    cell = h.table(["label"], [[h.esc('<img src="http://x">')]])
    assert "<img" not in cell and "&lt;img src=&quot;http://x&quot;&gt;" in cell


def test_a_night_of_thousands_of_segments_stays_a_small_timeline():
    from earmark import report_html as h
    night_s = 8 * 3600.0
    segs = [(t, t + 1.5, "snore" if i % 3 else "cough", 0.9)
            for i, t in enumerate(np.arange(0, night_s - 2, 5.0))]
    svg = h.timeline_svg(night_s, segs, ["snore", "cough"])
    assert len(segs) > 5000 and svg.count("<rect") <= 1 + 2 * h.TIMELINE_PX
    ticks = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert ticks[:3] == ["0:00", "1:00:00", "2:00:00"] and len(ticks) <= 9


def test_report_starts_without_beam_or_tensorflow():
    import subprocess
    import sys
    code = ("import sys, earmark.report; bad = {'apache_beam', 'tensorflow'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("args,message", [
    ([], "give --run LABEL_OUTPUT_DIR and/or --model MODEL_DIR"),
    (["--run", "{tmp}"], "no run.json; point it at the --output of 'earmark label'"),
    (["--run", "{tmp}/absent"], "no such folder"),
    (["--model", "{tmp}"], "no model.json; point it at the --model-dir of 'earmark train'"),
    (["--run", "gs://bucket/labels"], "local paths only"),
    (["--model", "{model}", "--evaluation", "{tmp}"], "no evaluation.json there"),
    (["--model", "{model}", "--output", "{tmp}/absent/r.html"], "does not exist"),
])
def test_user_errors_say_what_is_wrong_and_how_to_fix_it(built, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, model=built["model"]) for a in args]
    with pytest.raises(UserError) as e:
        report.main(args)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_audio_and_evaluation_degrade_to_notes(built, tmp_path):
    """Recordings gone, no scores, no evaluation.json, no history: notes, not a crash."""
    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("scores", "report.html"))
    (run / "dead_letter.jsonl").write_text("")   # no failed path to guess the audio root from
    summary = json.loads((run / "run.json").read_text())
    summary["input"] = str(tmp_path / "moved-away")  # the recordings are gone
    (run / "run.json").write_text(json.dumps(summary))
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(os.path.join(built["model"], "model.json"), model / "model.json")
    path = report.main(["--run", str(run), "--model", str(model), "--max-recordings", "1"])
    html = open(path, encoding="utf-8").read()
    assert html.count("audio not found") == min(12, len(segments(built["run"])))
    assert "no evaluation.json" in html and "no confusion matrix" in html
    assert "label with --scores" in html and "2 more recordings not drawn (of 3)" in html
    assert "<img" not in html
    assert "run.json counts 1 failed files, but dead_letter.jsonl lists none" in html


# --- in the browser -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    driver_path, chromium = shutil.which("chromedriver"), shutil.which("chromium")
    if not driver_path or not chromium:
        message = ("chromium and chromedriver are not on PATH: run .ci/install-browser "
                   "(Debian packages chromium, chromium-driver)")
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: " + message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def test_page_renders_in_chromium_with_every_section_and_no_console_errors(built, page, browser):
    from selenium.webdriver.common.by import By
    path, _ = page
    browser.get("file://" + path)
    assert browser.title.startswith("earmark report")
    for section_id in ("summary", "segments-per-label", "timelines", "top-segments",
                       "dead-letter", "model", "metrics", "curves", "confusion-matrix"):
        element = browser.find_element(By.ID, section_id)
        assert element.is_displayed() and len(element.text) > 20, section_id
    with open(os.path.join(built["run"], "run.json")) as f:
        run = json.load(f)
    rows = browser.find_elements(By.CSS_SELECTOR, "#timelines tr.timeline-row")
    assert len(rows) == run["files_labeled"] == 3
    assert "<b>&x.wav" in browser.find_element(By.ID, "timelines").text   # shown as text
    boxes = browser.find_elements(By.CSS_SELECTOR, "#timelines rect.seg")
    assert len(boxes) >= len({(r["file"], r["label"]) for r in segments(built["run"])})
    images = browser.find_elements(By.CSS_SELECTOR, "#top-segments img")
    assert len(images) == min(4, len(segments(built["run"])))
    for img in images:
        assert browser.execute_script("return arguments[0].complete && "
                                      "arguments[0].naturalWidth", img) > 100
    for img in browser.find_elements(By.CSS_SELECTOR, "#curves img"):
        assert browser.execute_script("return arguments[0].naturalWidth", img) > 100
    assert "broken.wav" in browser.find_element(By.ID, "dead-letter").text
    cells = browser.find_elements(By.CSS_SELECTOR, "#confusion-matrix td")
    assert len(cells) == 4 and sum(int(c.text) for c in cells) == 8
    if os.environ.get("EARMARK_REPORT_SCREENSHOT"):
        browser.set_window_size(1280, browser.execute_script("return document.body.scrollHeight"))
        browser.save_screenshot(os.environ["EARMARK_REPORT_SCREENSHOT"])
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
