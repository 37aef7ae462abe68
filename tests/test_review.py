"""`earmark review`: choosing what to verify from a label run, the review folder it writes,
review.html in headless Chromium (keys, clicks, the saved verdicts.csv), the verdicts back
into `earmark prepare`, and `--summarize`.

The label run is written with label's own writers (`label_formats`, `outputs.sources_csv`)
over recordings of band noise, its segments made from its scores by `model.segments`:
no model is trained, so the file takes seconds."""
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from earmark import cli
from earmark.model import annotations, data
from earmark.model.review import Item, LabelRule, Pool, split_budget
from earmark.model.review_stats import summarize, wilson
from earmark.model.segments import PostProcessing, Segment, WindowGrid, to_segments
from earmark.pipelines import label_formats, outputs
from tests.fixtures import RATE, files_under, one_line_error, recording
from tests.prepared import load_json, read_dead_letter

LABELS = ["class_0", "class_1", "background"]
ODD = 'c "1", <é>.wav'    # a comma, quotes and markup: the page and the saved CSV keep it whole
# recording → its (seconds, label or None) parts
PARTS = {"a.wav": [(2, "class_0"), (1.5, None), (2.5, "class_1"), (2, None), (3, "class_0"),
                   (1, None)],
         "night/b.flac": [(1, None), (3, "class_1"), (2, None), (2, "class_0"), (2, None)],
         ODD: [(1, None), (2, "class_0"), (1.5, None)]}
HOP_S, WINDOW_S = 0.48, 0.96
POST = {"class_0": PostProcessing(0.6), "class_1": PostProcessing(0.5, smoothing_windows=3),
        "background": None}


def window_scores(parts, rng):
    """[windows, labels] scores: each label's share of the window its parts fill, a little
    noise on top; background the rest."""
    duration = sum(s for s, _ in parts)
    starts = np.arange(int((duration - WINDOW_S) / HOP_S) + 2) * HOP_S
    scores, t = np.zeros((len(starts), len(LABELS))), 0.0
    for seconds, label in parts:
        if label:
            filled = np.minimum(starts + WINDOW_S, t + seconds) - np.maximum(starts, t)
            c = LABELS.index(label)
            scores[:, c] = np.maximum(scores[:, c], np.clip(filled, 0, None) / WINDOW_S)
        t += seconds
    scores[:, 2] = 1 - scores[:, :2].max(axis=1)
    return np.clip(scores * 0.9 + rng.uniform(0, 0.08, scores.shape), 0, 1), duration


def write_label_run(root, with_scores=True):
    """→ (corpus folder, label run folder) as `earmark label --scores` would leave them."""
    corpus, run = os.path.join(root, "corpus"), os.path.join(root, "labels")
    os.makedirs(os.path.join(corpus, "night"), exist_ok=True)
    os.makedirs(run)
    rng = np.random.default_rng(0)
    segments, sources = [], []
    for key, parts in PARTS.items():
        path = os.path.join(corpus, key)
        sf.write(path, recording(parts, rng), RATE)
        scores, duration = window_scores(parts, rng)
        found = to_segments(scores, LABELS, [POST[l] for l in LABELS],
                            WindowGrid(HOP_S, WINDOW_S), duration)
        segments += [Segment(s.start_s, s.end_s, s.label, s.confidence, key, "m1") for s in found]
        if with_scores:
            scores_path = os.path.join(run, label_formats.OUTPUT_FORMATS["scores"].path(key))
            os.makedirs(os.path.dirname(scores_path), exist_ok=True)
            with open(scores_path, "w") as f:
                f.write(label_formats.scores_csv(scores, LABELS, HOP_S))
        sources.append((key, path))
    with open(os.path.join(run, label_formats.SEGMENTS_CSV), "w") as f:
        f.write(label_formats.segments_csv(sorted(segments, key=lambda s: (s.file, s.start_s))))
    with open(os.path.join(run, outputs.SOURCES_FILE), "wb") as f:
        f.write(outputs.sources_csv(sources))
    post = {l: {"settings": (POST[l] or PostProcessing()).to_dict(), "written": bool(POST[l])}
            for l in LABELS}
    with open(os.path.join(run, label_formats.RUN_FILE), "w") as f:
        json.dump({"model_id": "m1", "labels": LABELS, "post_processing": post, "hop_s": HOP_S,
                   "input": corpus, "files_labeled": 2, "audio_hours": 0.006}, f)
    return corpus, run


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """A label run and `earmark review --budget 10` (mixed) of it."""
    root = tmp_path_factory.mktemp("review")
    corpus, run = write_label_run(str(root))
    before = {**files_under(corpus), **files_under(run)}
    out = str(root / "r")
    assert cli.main(["review", "--run", run, "--budget", "10", "--output", out]) == 0
    with open(os.path.join(out, "review.csv"), encoding="utf-8") as f:
        items, bad = annotations.parse_verdicts(f.read(), "review.csv")
    assert bad == []
    return {"root": root, "corpus": corpus, "run": run, "out": out, "items": items,
            "before": before}


def read_items(path):
    with open(path, encoding="utf-8") as f:
        rows, bad = annotations.parse_verdicts(f.read(), path)
    assert bad == []
    return rows


# --- choosing -------------------------------------------------------------------------------

def test_mixed_splits_the_budget_by_its_shares():
    assert split_budget(10, "mixed") == {"random": 3, "top": 2, "uncertain": 5}
    assert split_budget(1, "mixed") == {"random": 0, "top": 0, "uncertain": 1}
    assert split_budget(7, "top") == {"top": 7}


def test_uncertain_takes_windows_nearest_the_threshold_spread_over_recordings_and_time():
    rules = {"x": LabelRule(0.5), "y": LabelRule(0.7)}
    pool = Pool(rules, window_s=1.0, budget=6)
    starts = np.arange(10) * 0.5                       # windows overlap their neighbours
    near = np.array([0.1, 0.49, 0.51, 0.5, 0.2, 0.9, 0.52, 0.1, 0.1, 0.1])
    pool.add_scores("a", starts, {"x": near, "y": np.full(10, 0.1)})
    pool.add_scores("b", starts[:3], {"x": np.array([0.45, 0.2, 0.1]), "y": np.full(3, 0.1)})
    pool.add_scores("c", starts[:3], {"x": np.full(3, 0.1), "y": np.full(3, 0.1)})
    items = pool.choose("uncertain")
    assert all(i.strategy == "uncertain" for i in items) and len(items) == 6
    x = [(i.file, i.start_s, i.confidence) for i in items if i.label == "x"]
    # a's best (0.5 at 1.5 s), b's (0.45), a's next: 0.52 at 3 s (0.49 at 0.5 s overlaps
    # y's first item, 0.51 at 1 s x's own); c, nothing near 0.5, waits
    assert sorted(x) == [("a", 1.5, 0.5), ("a", 3.0, 0.52), ("b", 0.0, 0.45)]
    assert len([i for i in items if i.label == "y"]) == 3      # labels take turns
    for f in "abc":
        spans = sorted((i.start_s, i.end_s) for i in items if i.file == f)
        assert all(e <= s for (_, e), (s, _) in zip(spans, spans[1:]))


def test_random_is_uniform_over_windows_and_the_seed_repeats_it():
    rules = {"x": LabelRule(0.5)}

    def draw(seed, budget=60):
        pool = Pool(rules, window_s=1.0, budget=budget, seed=seed)
        pool.add_scores("big", np.arange(1000) * 0.5, {"x": np.linspace(0, 1, 1000)})
        pool.add_scores("small", np.arange(100) * 0.5, {"x": np.full(100, 0.9)})
        return pool.choose("random")
    first = draw(1)
    assert first == draw(1) and first != draw(2)
    assert len(first) == 60 and all(i.strategy == "random" for i in first)
    from_small = sum(i.file == "small" for i in first)
    assert 1 <= from_small <= 14          # 100 of 1100 windows: 5.5 expected
    assert draw(1, budget=10)[0] in first  # a smaller budget draws from the same order


def test_top_and_segment_uncertain_work_without_scores_random_does_not():
    rules = {"x": LabelRule(0.5), "y": LabelRule(0.5)}
    pool = Pool(rules, window_s=1.0, budget=3)
    pool.add_segments([Segment(0, 1, "x", 0.95, "a"), Segment(2, 3, "x", 0.55, "a"),
                       Segment(4, 5, "x", 0.8, "b"), Segment(0.5, 1.5, "y", 0.9, "a"),
                       Segment(6, 7, "background", 0.99, "a")])
    top = pool.choose("top")
    assert all(i.strategy == "top" for i in top)
    # x's best first; y's only segment overlaps it in time: passed over, so x fills the budget
    assert [(i.file, i.start_s, i.label) for i in top] == [("a", 0, "x"), ("a", 2, "x"),
                                                           ("b", 4, "x")]
    uncertain = pool.choose("uncertain", budget=1)
    assert [(i.label, i.confidence, i.strategy) for i in uncertain] == [("x", 0.55, "uncertain")]
    with pytest.raises(ValueError, match="needs window scores"):
        pool.choose("random")


# --- the review folder ------------------------------------------------------------------------

def test_review_writes_its_tables_and_nothing_outside_its_folder(reviewed):
    out, items = reviewed["out"], reviewed["items"]
    with open(os.path.join(out, "review.csv"), encoding="utf-8") as f:
        assert f.readline() == "file,start_s,end_s,label,confidence,strategy,verdict\n"
    assert len(items) == 10 and all(i.verdict == "" for i in items)
    by_strategy = {s: sum(i.strategy == s for i in items) for s in ("random", "top", "uncertain")}
    assert by_strategy == {"random": 3, "top": 2, "uncertain": 5}
    segments = {(s.file, s.start_s, s.end_s, s.label, s.confidence)
                for s in label_formats.read_segments_csv(
                    open(os.path.join(reviewed["run"], "segments.csv")).read())}
    for i in items:
        assert i.file in PARTS and i.label in ("class_0", "class_1")   # never background
        if i.strategy == "top":
            assert (i.file, i.start_s, i.end_s, i.label, i.confidence) in segments
        else:   # a window: start on the run's grid, one window long
            duration = sum(s for s, _ in PARTS[i.file])
            assert round(i.start_s / HOP_S, 6) % 1 == 0
            assert i.end_s - i.start_s == pytest.approx(min(WINDOW_S, duration - i.start_s))
    for f in PARTS:   # no two items of a recording overlap (random ones may)
        spans = sorted((i.start_s, i.end_s) for i in items
                       if i.file == f and i.strategy != "random")
        assert all(e <= s + 1e-9 for (_, e), (s, _) in zip(spans, spans[1:]))
    # a Raven table per recording, read back as verdicts: none given yet
    with open(os.path.join(out, "raven", "night", "b.flac.selections.txt")) as f:
        rows, bad = annotations.parse_raven(f.read(), "t")
    assert rows == [] and {b.reason for b in bad} == {"no_verdict"}
    assert len(bad) == sum(i.file == "night/b.flac" for i in items)
    with open(os.path.join(out, "audacity", "a.wav.txt")) as f:
        assert len(f.read().splitlines()) == sum(i.file == "a.wav" for i in items)
    manifest = outputs.read_manifest(out)
    assert manifest["command"] == "review" and manifest["complete"]
    assert sorted(manifest["files"]) == outputs.list_files(out)
    assert {**files_under(reviewed["corpus"]), **files_under(reviewed["run"])} == reviewed["before"]
    facts = load_json(out, "review.json")
    assert facts["thresholds"] == {"class_0": 0.6, "class_1": 0.5} and facts["window_s"] == WINDOW_S


def test_the_same_seed_chooses_the_same_items_and_a_later_round_excludes_them(reviewed, tmp_path):
    again = str(tmp_path / "again")
    assert cli.main(["review", "--run", reviewed["run"], "--budget", "10", "--output", again]) == 0
    with open(os.path.join(reviewed["out"], "review.csv"), "rb") as first, \
            open(os.path.join(again, "review.csv"), "rb") as second:
        assert first.read() == second.read()
    # the next round leaves out what this one asked
    later = str(tmp_path / "later")
    assert cli.main(["review", "--run", reviewed["run"], "--budget", "10", "--output", later,
                     "--exclude", reviewed["out"]]) == 0
    spans = {}
    for folder in (reviewed["out"], later):
        with open(os.path.join(folder, "review.csv"), newline="") as f:
            spans[folder] = [(r["file"], float(r["start_s"]), float(r["end_s"]))
                             for r in csv.DictReader(f)]
    assert spans[later] and not any(
        a[0] == b[0] and min(a[2], b[2]) > max(a[1], b[1])
        for a in spans[reviewed["out"]] for b in spans[later])
    assert load_json(later, "review.json")["excluded"]["items"] == len(spans[reviewed["out"]])


@pytest.mark.parametrize("case", ["no scores", "not empty", "the run itself", "no budget",
                                  "nothing to exclude"])
def test_user_errors_are_one_line(reviewed, tmp_path, capsys, case):
    run = reviewed["run"]
    if case == "no scores":
        _, bare = write_label_run(str(tmp_path / "bare"), with_scores=False)
        argv, message = ["--run", bare, "--budget", "5", "--output", str(tmp_path / "o")], \
            "--strategy mixed needs per-window scores"
    elif case == "not empty":
        argv, message = ["--run", run, "--budget", "5", "--output", reviewed["out"]], \
            "is not empty"
    elif case == "the run itself":
        argv, message = ["--run", run, "--budget", "5", "--output", run, "--overwrite"], \
            "holds the run it reviews"
    elif case == "nothing to exclude":
        argv, message = ["--run", run, "--budget", "5", "--output", str(tmp_path / "o"),
                         "--exclude", str(tmp_path)], "no verdicts.csv or review.csv there"
    else:
        argv, message = ["--run", run, "--output", str(tmp_path / "o")], "needs --budget"
    assert message in one_line_error(capsys, ["review", *argv])


def test_without_scores_top_and_uncertain_still_work(tmp_path):
    _, bare = write_label_run(str(tmp_path / "bare"), with_scores=False)
    out = str(tmp_path / "r")
    assert cli.main(["review", "--run", bare, "--budget", "4", "--strategy", "uncertain",
                     "--output", out]) == 0
    items = read_items(os.path.join(out, "review.csv"))
    assert len(items) == 4 and all(i.strategy == "uncertain" for i in items)


def test_help_imports_neither_tensorflow_nor_beam():
    code = ("import sys, contextlib, io\nfrom earmark import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        cli.main(['review', '--help'])\n"
            "    except SystemExit:\n        pass\n"
            "print(sorted({'tensorflow', 'apache_beam'} & set(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stderr[-2000:]


# --- review.html in the browser -------------------------------------------------------------

def test_page_is_self_contained(reviewed):
    import re
    with open(os.path.join(reviewed["out"], "review.html"), encoding="utf-8") as f:
        html = f.read()
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert refs and all(r.startswith("data:") for r in refs)
    assert "http://" not in html and "https://" not in html


def test_review_html_keys_clicks_and_saved_verdicts(reviewed, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
    from tests.browser import chromium
    items, downloads = reviewed["items"], tmp_path / "downloads"
    downloads.mkdir()
    with chromium(downloads) as browser:
        browser.get("file://" + os.path.join(reviewed["out"], "review.html"))
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.item")
        assert len(rows) == len(items)
        for img in browser.find_elements(By.CSS_SELECTOR, "img.spectrogram"):
            assert browser.execute_script("return arguments[0].complete && "
                                          "arguments[0].naturalWidth", img) > 100
        durations = browser.execute_script(
            "const a = Array.from(document.querySelectorAll('audio'));"
            "return Promise.all(a.map(x => x.readyState >= 1 ? x.duration : new Promise("
            "r => x.addEventListener('loadedmetadata', () => r(x.duration)))));")
        for item, seconds in zip(items, durations):   # the item and 1 s either side
            ends = min(item.end_s + 1.0, sum(s for s, _ in PARTS[item.file]))
            assert seconds == pytest.approx(ends - max(0.0, item.start_s - 1.0), abs=0.01)

        def keys(*pressed):
            ActionChains(browser).send_keys(*pressed).perform()
        expected = [""] * len(items)
        rows[0].find_element(By.CSS_SELECTOR, 'button[data-verdict="yes"]').click()
        expected[0] = "yes"                 # a click, and the next row is current
        keys("n")
        expected[1] = "no"
        keys("2")                           # the model's second label
        expected[2] = "yes" if items[2].label == LABELS[1] else LABELS[1]
        keys(Keys.ARROW_DOWN)               # row 3 stays blank
        keys("l", Keys.ARROW_DOWN, Keys.ARROW_DOWN, Keys.ARROW_DOWN)   # the label list
        expected[4] = LABELS[2]
        keys(Keys.ENTER)                    # back to the rows, on to the next
        keys(" ")                           # plays the current row's audio
        assert browser.execute_script(
            "return !document.querySelectorAll('tr.item audio')[5].paused")
        Select(rows[5].find_element(By.TAG_NAME, "select")).select_by_value(LABELS[0])
        expected[5] = "yes" if items[5].label == LABELS[0] else LABELS[0]
        rows[6].find_element(By.CSS_SELECTOR, 'button[data-verdict="no"]').click()
        keys(Keys.ARROW_UP, "u")            # back to row 6, then clear it
        keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN, "y")   # row 8
        expected[8] = "yes"
        progress = browser.find_element(By.ID, "progress").text
        assert progress == f"{sum(map(bool, expected))} of {len(items)} reviewed"
        browser.find_element(By.ID, "save").click()
        saved = downloads / "verdicts.csv"
        for _ in range(100):
            if saved.exists():
                break
            time.sleep(0.05)
        want = annotations.verdict_table([Item(i.file, i.start_s, i.end_s, i.label,
                                               i.confidence, i.strategy, v)
                                          for i, v in zip(items, expected)])
        assert saved.read_text(encoding="utf-8") == want
        browser.refresh()                   # the verdicts outlive a reload
        assert browser.find_element(By.ID, "progress").text == progress
        assert browser.execute_script("return window.earmarkReview.csvText()") == want
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []


# --- verdicts back into training --------------------------------------------------------------

def test_verdicts_become_events_negatives_or_nothing_in_prepare(reviewed, tmp_path, capsys):
    """review.csv with verdicts (and a Raven table of review's, filled in as in Raven) →
    a real `earmark prepare`: yes → the item's label, no → background, another label →
    that label, blank → no window and a `no_verdict` dead letter, never background. A `no` on one label of a model that has
    two rules out that label only: its windows are left out, not background."""
    from tests.test_annotation_tools import written_windows
    ann = tmp_path / "verdicts"
    (ann / "raven" / "night").mkdir(parents=True)
    a = [Item("a.wav", 0.0, 1.92, "class_0", 0.97, "top", "yes"),
         Item("a.wav", 3.84, 5.76, "class_1", 0.55, "uncertain", "no"),
         Item("a.wav", 7.68, 9.6, "class_0", 0.61, "uncertain", "class_1"),
         Item("a.wav", 10.56, 12.0, "class_0", 0.4, "random", "")]
    (ann / "verdicts.csv").write_text(annotations.verdict_table(a), encoding="utf-8")
    b = [Item("night/b.flac", 0.96, 2.88, "class_1", 0.9, "top", "YES"),
         Item("night/b.flac", 5.76, 7.68, "class_0", 0.9, "top", "")]
    (ann / "raven" / "night" / "b.flac.selections.txt").write_text(
        annotations.verdict_raven_table(b, 125, 7500))
    out = str(tmp_path / "prepared")
    argv = ["prepare", "--input", reviewed["corpus"], "--annotations", str(ann),
            "--output", out]
    assert "pass --annotated-extent selections" in one_line_error(capsys, argv)
    assert "is an 'earmark review' folder" in one_line_error(
        capsys, argv[:4] + [reviewed["out"], "--output", out, "--annotated-extent", "selections"])
    assert cli.main(argv + ["--annotated-extent", "selections"]) == 0
    assert dict(written_windows(out)) == {
        "a.wav": {0.0: ("class_0",), 0.96: ("class_0",), 7.68: ("class_1",),
                  8.64: ("class_1",)},
        "night/b.flac": {0.96: ("class_1",), 1.92: ("class_1",)}}
    dead = [d for d in read_dead_letter(out) if d["reason"] == "no_verdict"]
    assert sorted((os.path.basename(d["path"]), d["line"]) for d in dead) == \
        [("b.flac.selections.txt", 3), ("verdicts.csv", 5)]
    printed = capsys.readouterr().out
    assert "failed {'no_verdict': 2}" in printed
    assert "2 in negative selections that rule out some labels only" in printed
    # what calibration learns from: every answered span, blank ones not among them
    reviewed_spans = data.read_reviewed(data.open_prepared(out), data.SPLITS)
    assert [(r.key, [(e.start_s, e.end_s, e.label) for e in r.events], list(r.negatives))
            for r in reviewed_spans] == [
        ("a.wav", [(0.0, 1.92, "class_0"), (7.68, 9.6, "class_1")], [(3.84, 5.76, "class_1")]),
        ("night/b.flac", [(0.96, 2.88, "class_1")], [])]


def test_a_later_round_that_answers_a_span_otherwise_wins_in_training_and_calibration(
        reviewed, tmp_path):
    """Round 1 says yes to a class_0 detection, round 2 (the reviewer changed their mind) no.
    Trained together, round 1's windows there are left out, said so, and calibration sees
    the `no` only; in the other `--data` order the `yes` wins. A later `no` on a neighbouring
    span that overlaps an earlier `yes` by less than half is another item: both answers
    calibrate, and only the earlier windows in the overlap are left out. Answers that agree
    stay."""
    from earmark.model import train as train_module, training_data
    rounds = {"round_1": [Item("a.wav", 0.0, 1.92, "class_0", 0.97, "top", "yes"),
                          Item("a.wav", 7.68, 9.6, "class_1", 0.61, "uncertain", "yes"),
                          Item("night/b.flac", 0.96, 2.88, "class_1", 0.9, "top", "yes")],
              "round_2": [Item("a.wav", 0.0, 1.92, "class_0", 0.97, "top", "no"),
                          Item("a.wav", 7.68, 9.6, "class_1", 0.61, "uncertain", "yes"),
                          Item("night/b.flac", 2.5, 4.42, "class_1", 0.5, "uncertain", "no")]}
    roots = []
    for name, items in rounds.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "verdicts.csv").write_text(annotations.verdict_table(items),
                                                      encoding="utf-8")
        roots.append(str(tmp_path / f"{name}_prepared"))
        assert cli.main(["prepare", "--input", reviewed["corpus"], "--annotations",
                         str(tmp_path / name), "--output", roots[-1],
                         "--annotated-extent", "selections", "--split", "100/0/0"]) == 0

    def trained_on(order):
        training = training_data.open_training_data(order)
        train = training_data.merged_split(training, training_data.read_splits(training), "train")
        rows = {(k, round(float(t), 2), training.labels[l])
                for k, t, l in zip(train.recording_key, train.start_s, train.label)}
        spans = {r.key: ({(e.start_s, e.end_s, e.label) for e in r.events}, set(r.negatives))
                 for r in training_data.reviewed_recordings(training)}
        return training, rows, spans

    both, rows, spans = trained_on(roots)
    assert not any(r[0] == "a.wav" and r[2] == "class_0" for r in rows)
    assert {("a.wav", 7.68, "class_1"), ("a.wav", 8.64, "class_1")} <= rows
    assert spans["a.wav"][0] == {(7.68, 9.6, "class_1")} and \
        (0.0, 1.92, "class_0") in spans["a.wav"][1]
    # the neighbour: both answers calibrate; the window reaching into the `no` is left out
    assert spans["night/b.flac"] == ({(0.96, 2.88, "class_1")}, {(2.5, 4.42, "class_1")})
    assert ("night/b.flac", 0.96, "class_1") in rows
    assert ("night/b.flac", 1.92, "class_1") not in rows
    warned = []
    train_module._read_splits(both, warned.append)
    assert f"--data {roots[0]}: 3 windows left out of training: a later --data folder of " \
           "verdicts answers their time otherwise (the later answer wins)" in warned
    _, rows, spans = trained_on(roots[::-1])
    assert {("a.wav", 0.0, "class_0"), ("a.wav", 0.96, "class_0")} <= rows
    assert (0.0, 1.92, "class_0") in spans["a.wav"][0] and \
        not any(n[:2] == (0.0, 1.92) for n in spans["a.wav"][1])


def test_verdict_table_round_trips_odd_labels_and_files():
    rows = [Item('night "1", é.wav', 1.0, 2.5, 'snore, "loud"', 0.5, "top", "no"),
            Item("a\nb.wav", 0.0, 0.96, "x\ry", 0.25, "random", "")]
    parsed, bad = annotations.parse_verdicts("\ufeff" + annotations.verdict_table(rows), "t")
    assert bad == [] and [(r.file, r.start_s, r.end_s, r.label, r.confidence, r.strategy,
                           r.verdict) for r in parsed] == [tuple(r.__dict__.values()) for r in rows]
    events, bad = annotations.parse_csv(annotations.verdict_table(rows), "t.csv")
    assert [e.label for e in events] == ['not_snore, "loud"'] and bad[0].reason == "no_verdict"


@pytest.mark.parametrize("verdict, read_as", [
    ("yes", "snore"), ("Y", "snore"), (" no ", "not_snore"), ("n", "not_snore"),
    ("SNORE", "snore"), ("Cough", "cough"),            # a label of the table, in any case
    ("not snore", "not_snore"), ("No-Cough", "not_cough"), ("not_wheeze", "not_wheeze"),
    ("wheeze", "wheeze"),                               # a new label, as written
    ("", None), ("?", None), ("unsure", None), ("Maybe", None),   # no answer
    ("yse", ValueError), ("no.", ValueError), ("Yes!", ValueError), ("on", ValueError),
    ("true", ValueError), ("1", ValueError), ("x", ValueError), ("nope", ValueError),
    ("not wheeze", ValueError)])
def test_a_verdict_is_yes_no_a_label_or_no_answer_and_never_a_guess(verdict, read_as):
    """A typo or a spreadsheet's 1 / true would otherwise become a new label, whose windows
    train as "not snore": such a verdict is refused, never read as anything."""
    if read_as is ValueError:
        with pytest.raises(ValueError, match="neither yes, no nor a label of the table"):
            annotations.verdict_label("snore", verdict, ("snore", "cough"))
    else:
        assert annotations.verdict_label("snore", verdict, ("snore", "cough")) == read_as


def test_unclear_verdicts_are_left_out_and_reported_in_every_table_kind():
    """Filled in by hand in Raven or a spreadsheet: `Snore` is the table's snore, `yse` is
    left out with its span (`unclear_verdict`), as a blank one is (`no_verdict`)."""
    items = [Item("a.wav", 0.0, 1.0, "snore", 0.9, "top", "Snore"),
             Item("a.wav", 2.0, 3.0, "snore", 0.6, "uncertain", "yse"),
             Item("a.wav", 4.0, 5.0, "cough", 0.6, "uncertain", "not snore"),
             Item("a.wav", 6.0, 7.0, "cough", 0.5, "random", "?")]
    for parsed in (annotations.parse_csv(annotations.verdict_table(items), "v.csv"),
                   annotations.parse_raven(annotations.verdict_raven_table(items, 0, 8000),
                                           "a.wav.selections.txt")):
        rows, bad = parsed
        assert [(r.start_s, r.label) for r in rows] == [(0.0, "snore"), (4.0, "not_snore")]
        assert [(b.reason, b.span_s) for b in bad] == [("unclear_verdict", (2.0, 3.0)),
                                                       ("no_verdict", (6.0, 7.0))]
        assert "'yse' is neither yes, no nor a label of the table (cough, snore)" in bad[0].detail
    rows, _ = annotations.parse_verdicts(annotations.verdict_table(items), "v.csv")
    s = summarize(rows, {"snore": 0.5, "cough": 0.5})
    assert (s["reviewed"], s["not_reviewed"], s["unclear_verdicts"]) == (2, 2, 1)
    assert s["labels"]["snore"]["precision"]["k"] == 1


def test_a_selection_the_reviewer_adds_in_raven_is_an_event_of_its_label():
    """Raven, reviewing: a missed snore gets a new selection, its Annotation typed and its
    Confidence, Strategy and Verdict left empty: an event of that label (a `not_snore` one a
    negative), where an item review chose without a verdict stays left out."""
    items = [Item("a.wav", 1.0, 2.0, "snore", 0.9, "top", "yes"),
             Item("a.wav", 3.0, 4.0, "snore", 0.6, "uncertain", "")]
    table = annotations.verdict_raven_table(items, 0, 8000)
    table += "3\tSpectrogram 1\t1\t6.0\t7.5\t0\t8000\tsnore\n"          # Raven leaves the rest out
    table += "4\tSpectrogram 1\t1\t8.0\t9.0\t0\t8000\tnot_snore\t\t\t\n"
    rows, bad = annotations.parse_raven(table, "a.wav.selections.txt")
    assert [(r.start_s, r.label) for r in rows] == [(1.0, "snore"), (6.0, "snore"),
                                                    (8.0, "not_snore")]
    assert [(b.reason, b.span_s) for b in bad] == [("no_verdict", (3.0, 4.0))]
    csv_text = annotations.verdict_table(items) + "a.wav,6.000,7.500,snore,,,\n"
    rows, bad = annotations.parse_csv(csv_text, "verdicts.csv")
    assert [(r.start_s, r.label) for r in rows] == [(1.0, "snore"), (6.0, "snore")]
    parsed, _ = annotations.parse_verdicts(csv_text, "verdicts.csv")
    assert summarize(parsed, {"snore": 0.5})["items"] == 2   # not one review chose


# --- what the verdicts say ------------------------------------------------------------------

def test_wilson_interval():
    assert wilson(3, 5) == (0.2307, 0.8824)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0 and wilson(0, 0) == (None, None)


def test_summarize_estimates_precision_and_prevalence(reviewed, tmp_path, capsys):
    out = str(tmp_path / "r")
    shutil.copytree(reviewed["out"], out)
    rows = ([Item("a.wav", t, t + 1, "class_0", 0.9, "top", v)
             for t, v in enumerate(["yes", "yes", "yes", "no"])] +
            [Item("a.wav", 5, 6, "class_0", 0.55, "uncertain", "yes"),       # below threshold
             Item("a.wav", 6, 7, "class_0", 0.65, "uncertain", "class_1")] +
            [Item("b.wav", t, t + 1, label, score, "random", v) for t, (label, score, v) in
             enumerate([("class_1", 0.7, "yes"), ("class_0", 0.2, "no"),
                        ("class_0", 0.3, "class_1"), ("class_1", 0.1, "no"),
                        ("class_1", 0.2, "no"), ("class_0", 0.1, "background"),
                        ("class_0", 0.1, "no"), ("class_0", 0.1, "")])])
    with open(os.path.join(out, "verdicts.csv"), "w", encoding="utf-8") as f:
        f.write(annotations.verdict_table(rows))
    assert cli.main(["review", "--summarize", out]) == 0
    summary = load_json(out, "review_summary.json")
    assert summary["verdicts"] == "verdicts.csv" and summary["not_reviewed"] == 1
    c0, c1 = summary["labels"]["class_0"], summary["labels"]["class_1"]
    assert (c0["precision"]["k"], c0["precision"]["n"]) == (3, 5)
    assert (c0["precision"]["low"], c0["precision"]["high"]) == wilson(3, 5)
    assert c0["precision"]["by_strategy"]["top"]["estimate"] == 0.75
    assert (c1["precision"]["k"], c1["precision"]["n"]) == (1, 1)   # the random one above 0.5
    assert (c1["prevalence"]["k"], c1["prevalence"]["n"]) == (2, 7)
    assert c0["prevalence"]["estimate"] == 0.0
    windows = load_json(out, "review.json")["windows"]
    assert c1["prevalence"]["windows_in_run"] == round(2 / 7 * windows)
    printed = capsys.readouterr().out
    assert "class_0" in printed and "0.60 (0.23-0.88)" in printed
    assert "review_summary.json" in outputs.read_manifest(out)["files"]
    # the same figures in the report's Review section, nothing written in the review folder
    before = files_under(out)
    page = tmp_path / "report.html"
    assert cli.main(["report", "--review", out, "--output", str(page)]) == 0
    html = page.read_text()
    assert 'id="review"' in html and "0.60 (0.23-0.88)" in html and "5 of 12 items" not in html
    assert files_under(out) == before


def test_summarize_counts_a_blank_verdict_as_not_reviewed():
    rows = [annotations.VerdictRow("a", 0, 1, "x", 0.9, "random", "", "t", 2)]
    s = summarize(rows, {"x": 0.5})
    assert s["reviewed"] == 0 and s["labels"]["x"]["prevalence"]["estimate"] is None


def test_items_reviewed_in_an_earlier_round_are_not_asked_again():
    rules = {"x": LabelRule(0.5)}
    pool = Pool(rules, window_s=1.0, budget=4, seed=3)
    starts = np.arange(40) * 0.5
    pool.add_scores("a", starts, {"x": np.linspace(0.3, 0.7, 40)})
    pool.add_segments([Item("a", 4.0, 6.0, "x", 0.9, ""), Item("a", 10.0, 11.0, "x", 0.8, "")])
    for strategy in ("uncertain", "random", "top", "mixed"):
        first = pool.choose(strategy)
        again = pool.choose(strategy, reviewed=[(i.file, i.start_s, i.end_s) for i in first])
        assert first and not any(min(a.end_s, b.end_s) > max(a.start_s, b.start_s)
                                 for a in first for b in again), strategy
