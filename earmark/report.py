"""`earmark report`: one self-contained HTML page for a labeling run and/or a trained model.

Run (`--run`, the --output of 'earmark label'): summary from run.json, segments per label,
a timeline per recording (with per-window score traces when labeled with --scores), the
top segments with log-mel thumbnails decoded from the recordings, and the failed files.
Model (`--model`, the --model-dir of 'earmark train'): metrics, event detection (the
post-processing and calibration model.json ships, and the event scores of
event_evaluation.json when 'earmark evaluate --annotations' has written one), training and PR
curves, the confusion matrix (from evaluation.json when 'earmark evaluate' has written one).

Everything is inline (CSS, PNGs as data: URIs, SVG): the file can be mailed or archived.
Missing optional pieces become a note in the page. Reads local folders only and never
imports Beam; TensorFlow (for the thumbnails' log-mel, the models' own frontend) is
imported only when the first thumbnail is drawn.
"""
import argparse
import datetime
import importlib.util
import json
import os
from collections import Counter, defaultdict

import numpy as np

from earmark import report_html as h
from earmark.model import model_files
from earmark.model.errors import UserError
from earmark.model.features import FeatureConfig
from earmark.model.model_files import EVALUATION_FILE, EVENT_EVALUATION_FILE, HISTORY_FILE, META_FILE
from earmark.model.segments import PostProcessing, Segment, model_post_processing
from earmark.pipelines import flags
from earmark.pipelines import label_formats  # Beam-free: the label outputs' names and readers
from earmark.pipelines.label_formats import DEAD_LETTER_FILE, RUN_FILE, SEGMENTS_CSV, SEGMENTS_JSONL

CONTEXT_S = 0.5              # audio shown either side of a segment in its thumbnail
MAX_THUMBNAIL_S = 12.0       # longer segments show their first seconds only
MAX_DEAD_LETTER_ROWS = 200
MAX_FULL_DECODE_BYTES = 256 << 20   # files that cannot seek are decoded whole up to this


def build_arg_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(
        prog="earmark report",
        description="Write one self-contained HTML report (no external files or URLs) for a "
                    "labeling run and/or a trained model.",
        epilog="examples:\n"
               "  earmark report --run labels/                  # → labels/report.html\n"
               "  earmark report --model models/snore           # → models/snore/report.html\n"
               "  earmark report --run labels/ --model models/snore --audio-root recordings/ \\\n"
               "      --top 24 --output night-report.html\n"
               "  earmark report --model models/snore --event-evaluation eval/\n"
               "Thumbnails need the recordings: they are found under --audio-root (the --input\n"
               "of 'earmark label'), or where run.json / dead_letter.jsonl say they were.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="LABEL_OUTPUT_DIR", help="the --output of 'earmark label'")
    p.add_argument("--model", metavar="MODEL_DIR", help="the --model-dir of 'earmark train'")
    p.add_argument("--evaluation", metavar="PATH",
                   help="evaluation.json (or its folder) of 'earmark evaluate' "
                        "(default: the one in MODEL_DIR, if any)")
    p.add_argument("--event-evaluation", metavar="PATH",
                   help="event_evaluation.json (or its folder) of 'earmark evaluate "
                        "--annotations' (default: the one in MODEL_DIR, if any)")
    p.add_argument("--audio-root", metavar="DIR",
                   help="folder the run's file keys are relative to (the --input of 'earmark "
                        "label'); default: guessed from run.json and dead_letter.jsonl")
    p.add_argument("--output", metavar="report.html",
                   help="where to write the page (default: report.html in the run dir, "
                        "else in the model dir)")
    p.add_argument("--top", type=int, default=12, metavar="N",
                   help="highest-confidence segments shown with a spectrogram (default 12)")
    p.add_argument("--max-recordings", type=int, default=50, metavar="N",
                   help="recordings drawn as timelines (default 50; the page says how many "
                        "were left out)")
    return p


def main(argv=None) -> str:
    args = build_arg_parser().parse_args(argv)
    _check_args(args)
    sections, title_parts, config = [], [], None
    model = read_model(args.model, args.evaluation, args.event_evaluation) if args.model else None
    if args.run:
        run = read_run(args.run, args.audio_root)
        config, config_note = _feature_config(model, run)
        sections += run_sections(run, model, config, config_note, args.top, args.max_recordings)
        title_parts.append(f"run {os.path.basename(os.path.abspath(args.run))}")
    if model:
        sections.append(("model", "Model", model_body(model)))
        title_parts.append(f"model {os.path.basename(os.path.abspath(args.model))}")
    output = args.output or os.path.join(args.run or args.model, "report.html")
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sources = " · ".join(f"{k}: {os.path.abspath(v)}" for k, v in
                         (("run", args.run), ("model", args.model)) if v)
    page = h.page("earmark report: " + ", ".join(title_parts), f"{sources} · generated {generated}",
                  sections)
    _write(output, page)
    print(f"report: {os.path.abspath(output)}")
    return os.path.abspath(output)


def _check_args(args):
    if not args.run and not args.model:
        raise UserError("give --run LABEL_OUTPUT_DIR and/or --model MODEL_DIR "
                        "(see 'earmark report --help')")
    for flag, value in (("--run", args.run), ("--model", args.model),
                        ("--evaluation", args.evaluation),
                        ("--event-evaluation", args.event_evaluation),
                        ("--audio-root", args.audio_root),
                        ("--output", args.output)):
        if value and "://" in value:
            raise UserError(f"{flag} {value}: earmark report reads and writes local paths only; "
                            "copy the folder here first (e.g. gsutil -m cp -r)")
    if args.top < 0 or args.max_recordings < 0:
        raise UserError("--top and --max-recordings must be 0 or more")


def _write(path: str, text: str):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--output {path}: folder {folder} does not exist; create it or "
                        "choose another path")
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _read_json(path: str, what: str, fix: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); {fix}") from None
    except OSError as e:
        raise UserError(f"{what}: cannot read {path} ({e.strerror}); {fix}") from None


# --- run: reading ---------------------------------------------------------------------------

def read_run(run_dir: str, audio_root: str = None) -> dict:
    """Everything the run sections need from a label output folder."""
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isdir(run_dir):
        raise UserError(f"--run {run_dir}: no such folder; point it at the --output of "
                        "'earmark label'")
    if not os.path.isfile(path):
        raise UserError(f"--run {run_dir}: no run.json; point it at the --output of "
                        "'earmark label' (a run that finished)")
    summary = _read_json(path, f"--run {run_dir}", "re-run 'earmark label'")
    segments = read_segments(run_dir)
    dead = read_dead_letter(run_dir)
    roots = audio_roots(run_dir, summary, dead, audio_root)
    return {"dir": run_dir, "summary": summary, "segments": segments, "dead": dead,
            "recordings": labeled_recordings(run_dir, segments), "audio_roots": roots,
            "labels": list(summary.get("labels") or sorted({s.label for s in segments}))}


def read_segments(run_dir: str) -> list:
    """The `Segment`s of segments.csv (or of segments.jsonl when only that was written);
    [] when neither."""
    for name, read in ((SEGMENTS_CSV, label_formats.read_segments_csv),
                       (SEGMENTS_JSONL, label_formats.read_segments_jsonl)):
        text = _read_text(os.path.join(run_dir, name))
        if text is not None:
            return read(text)
    return []


def _read_text(path: str):
    """A local file's UTF-8 text, untranslated line ends (as csv wants); None when absent."""
    if not os.path.isfile(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return f.read()


def read_dead_letter(run_dir: str) -> list:
    path = os.path.join(run_dir, DEAD_LETTER_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _keys_under(folder: str, suffix: str) -> set:
    keys = set()
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if name.endswith(suffix):
                rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
                keys.add(rel[:-len(suffix)])
    return keys


def labeled_recordings(run_dir: str, segments: list) -> list:
    """Keys of every labeled recording: those with segments, plus those whose per-recording
    files (scores/, raven/, audacity/) show they were labeled without any."""
    keys = {s.file for s in segments}
    for folder, suffix in label_formats.PER_RECORDING.values():
        keys |= _keys_under(os.path.join(run_dir, folder), suffix)
    return sorted(keys)


def read_scores(run_dir: str, key: str):
    """(window starts [n], {label: scores [n]}) from scores/KEY.csv, or None."""
    folder, suffix = label_formats.PER_RECORDING["scores"]
    text = _read_text(os.path.join(run_dir, folder, key + suffix))
    return None if text is None else label_formats.read_scores_csv(text)


def audio_roots(run_dir: str, summary: dict, dead: list, audio_root: str = None) -> list:
    """Folders the run's file keys may be relative to, most trusted first."""
    roots = []
    if audio_root:
        if not os.path.isdir(audio_root):
            raise UserError(f"--audio-root {audio_root}: no such folder; give the --input "
                            "folder of 'earmark label'")
        roots.append(audio_root)
    for name in ("input", "manifest"):  # recorded by label runs that know them
        where = summary.get(name)
        if isinstance(where, str) and "://" not in where:
            roots.append(where if os.path.isdir(where) else os.path.dirname(where))
    for d in dead:  # a failed file's absolute path ends with its key
        path, key = d.get("path", ""), d.get("file", "")
        if key and path.endswith(key) and "://" not in path:
            roots.append(path[:-len(key)].rstrip("/") or "/")
    return list(dict.fromkeys(os.path.abspath(r) for r in roots))


def find_audio(key: str, roots: list):
    """The recording's local path, or None when it is not (or no longer) there."""
    candidates = [key] if os.path.isabs(key) else []
    candidates += [os.path.join(root, key) for root in roots]
    return next((c for c in candidates if os.path.isfile(c)), None)


def recording_duration(path, scores, segments, window_s: float) -> float:
    """Seconds of a recording: its header, else the scored windows, else its last segment."""
    if path:
        try:
            import soundfile as sf
            return float(sf.info(path).duration)
        except Exception:
            pass
    estimates = [s.end_s for s in segments]
    if scores is not None and len(scores[0]):
        estimates.append(float(scores[0][-1]) + window_s)
    return max(estimates, default=0.0)


def _feature_config(model, run):
    """The FeatureConfig for thumbnails: --model's, else the run's model dir's, else the
    defaults; plus a note when it is not the run's own."""
    summary = run["summary"]
    meta = model["meta"] if model else None
    if meta is None:
        where = summary.get("model")
        if isinstance(where, str) and os.path.isfile(os.path.join(where, META_FILE)):
            try:  # the run's model only lends its log-mel settings: a broken one, the defaults
                meta = model_files.read_local_meta(where)
            except UserError:
                meta = None
    if not meta or "feature_config" not in meta:
        return FeatureConfig(), ("spectrograms use earmark's default log-mel settings: the "
                                 "run's model was not found (pass --model MODEL_DIR)")
    config = FeatureConfig.from_dict(meta["feature_config"])
    run_hash = summary.get("feature_config_hash")
    if run_hash and run_hash != config.hash():
        return config, "the model's log-mel settings differ from the run's: was it another model?"
    return config, None


# --- run: thumbnails ------------------------------------------------------------------------

def log_mel(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Mono waveform → [frames, mel_bins] with the frontend the models use
    (`model.frontend.log_mel`); TensorFlow is imported here, on the first thumbnail only."""
    import tensorflow as tf
    from earmark.model.frontend import log_mel as frontend_log_mel
    waveform = np.asarray(waveform, np.float32)
    if len(waveform) < config.window_samples:  # at least one frame
        waveform = np.pad(waveform, (0, config.window_samples - len(waveform)))
    return frontend_log_mel(tf.constant(waveform), config).numpy()


def read_excerpt(path: str, start_s: float, end_s: float, config: FeatureConfig) -> np.ndarray:
    """Mono audio of [start_s, end_s) at the config's rate, via model/audio.py; only those
    frames are read when the format can seek."""
    import soundfile as sf
    from earmark.model import audio
    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            f.seek(int(start_s * rate))
            samples = f.read(int((end_s - start_s) * rate), dtype="float32", always_2d=True)
    except Exception:
        if os.path.getsize(path) > MAX_FULL_DECODE_BYTES:
            raise
        with open(path, "rb") as f:
            samples, rate = audio.decode(f.read(), path)
        samples = samples[int(start_s * rate):int(end_s * rate)]
    return audio.resample(audio.to_mono(samples), rate, config.sample_rate_hz,
                          config.resample_quality)


def thumbnail(path: str, seg: Segment, duration_s: float, config: FeatureConfig, color: str):
    """(PNG bytes, caption note or "") of a segment's log-mel with CONTEXT_S either side."""
    t0 = max(0.0, seg.start_s - CONTEXT_S)
    t1 = min(max(duration_s, seg.end_s), seg.end_s + CONTEXT_S)
    clipped = t1 - t0 > MAX_THUMBNAIL_S
    t1 = min(t1, t0 + MAX_THUMBNAIL_S)
    mel = log_mel(read_excerpt(path, t0, t1, config), config)
    png = h.spectrogram_png(mel, t1 - t0, (seg.start_s - t0, seg.end_s - t0), color)
    return png, (f"first {MAX_THUMBNAIL_S:g} s shown" if clipped else "")


# --- run: sections --------------------------------------------------------------------------

def run_sections(run, model, config, config_note, top, max_recordings) -> list:
    """(id, heading, body) of the run's sections, in page order."""
    durations, scores = _recording_facts(run, config, max_recordings, top)
    return [("summary", "Summary", summary_body(run, model)),
            ("segments-per-label", "Segments per label", per_label_body(run)),
            ("timelines", "Timelines", timelines_body(run, durations, scores, max_recordings)),
            ("top-segments", "Top segments", top_segments_body(run, durations, config,
                                                               config_note, top)),
            ("dead-letter", "Failed files", dead_letter_body(run))]


def _recording_facts(run, config, max_recordings, top):
    """{key: duration_s} and {key: scores} of the recordings drawn as timelines or holding a
    top segment (only those: a run may hold a million recordings)."""
    by_file = _segments_by_file(run["segments"])
    drawn = run["recordings"][:max_recordings]
    needed = dict.fromkeys(drawn + [s.file for s in top_segments(run["segments"], top)])
    durations, scores = {}, {}
    for key in needed:
        s = read_scores(run["dir"], key)
        if s is not None and key in drawn:  # drawn at window centres
            scores[key] = (s[0] + config.patch_seconds / 2, s[1])
        durations[key] = recording_duration(find_audio(key, run["audio_roots"]), s,
                                            by_file.get(key, []), config.patch_seconds)
    return durations, scores


def top_segments(segments, top) -> list:
    """The `top` highest-confidence segments (ties: by file, then start)."""
    return sorted(segments, key=lambda s: (-s.confidence, s.file, s.start_s))[:top]


def _segments_by_file(segments) -> dict:
    out = defaultdict(list)
    for s in segments:
        out[s.file].append(s)
    return out


def summary_body(run, model) -> str:
    s = run["summary"]
    pairs = [("model id", s.get("model_id", "?")), ("model", s.get("model", "?")),
             ("labels", ", ".join(run["labels"])),
             ("thresholds", ", ".join(f"{k} {v:g}" for k, v in (s.get("thresholds") or {}).items())),
             ("files matched", s.get("files_matched", "?")),
             ("files labeled", s.get("files_labeled", "?")),
             ("files failed", s.get("files_failed", "?")),
             ("audio", f"{s.get('audio_hours', 0):.3f} h"),
             ("wall time", f"{s.get('wall_s', 0):.1f} s"),
             ("speed", f"{s.get('audio_hours_per_wall_hour')} × real time"),
             ("segments", sum((s.get("segments_per_label") or {}).values())),
             ("window hop", f"{s.get('hop_s', '?')} s"), ("formats", ", ".join(s.get("formats", [])))]
    if s.get("run_id"):
        pairs.append(("incremental run", f"{s['run_id']} ({s.get('files_new_or_changed')} new or "
                                         "changed files; counts are this run's)"))
    post = _dict(s.get("post_processing"))
    not_written = [l for l, e in post.items() if _dict(e).get("written") is False]
    if not_written:
        pairs.append(("labels not written (background)", ", ".join(map(str, not_written))))
    body = h.key_values(pairs) + run_post_processing_body(post)
    if model and model["model_id"] and s.get("model_id") and model["model_id"] != s["model_id"]:
        body += h.note(f"--model is {model['model_id']}, but this run was labeled by "
                       f"{s['model_id']}: the model section describes another model")
    return body


def run_post_processing_body(post: dict) -> str:
    """run.json `post_processing` (label → settings, from: field → model|flag|default,
    written) as a table; older runs recorded thresholds only."""
    if not post:
        return h.muted("run.json records no per-label post-processing (labeled by an older "
                       "earmark): only the thresholds above are known")
    rows = []
    for label, entry in post.items():
        entry = _dict(entry)
        settings, sources = _dict(entry.get("settings")), _dict(entry.get("from"))
        cells = []
        for field, _ in PP_COLUMNS:
            source = sources.get(field)
            tag = "" if source is None else (
                f' <b class="src">{h.esc(source)}</b>' if source == "flag"
                else f' <span class="muted src">{h.esc(source)}</span>')
            cells.append(_fmt(settings.get(field), "g") + tag)
        written = entry.get("written")
        rows.append([h.esc(label), *cells, "yes" if written is not False else
                     "no (background)"])
    return ("<h3>Post-processing</h3>"
            + h.table(["label", *(name for _, name in PP_COLUMNS), "segments written"], rows,
                      {1, 2, 3, 4})
            + h.muted("each value's source: model = calibrated at train time and shipped in "
                      "model.json; flag = set on the 'earmark label' command line; default = "
                      "earmark's default"))


def per_label_body(run) -> str:
    if not run["segments"]:
        return h.note("no segments in this run (or no segments.csv / segments.jsonl: label "
                      "with --formats csv or jsonl)")
    count, seconds, conf = Counter(), Counter(), defaultdict(list)
    for s in run["segments"]:
        count[s.label] += 1
        seconds[s.label] += s.end_s - s.start_s
        conf[s.label].append(s.confidence)
    labels = run["labels"] + sorted(set(count) - set(run["labels"]))
    most = max(count.values())
    rows = [[f'<i class="swatch" style="background:{h.label_color(i)}"></i>{h.esc(l)}',
             str(count[l]), h.fmt_time(seconds[l]) if count[l] else "–",
             f"{np.mean(conf[l]):.3f}" if conf[l] else "–",
             h.bar(count[l] / most, h.label_color(i))] for i, l in enumerate(labels)]
    return h.table(["label", "segments", "total time", "mean confidence", ""], rows, {1, 2, 3})


def timelines_body(run, durations, scores, max_recordings) -> str:
    keys = run["recordings"]
    if not keys:
        return h.note("no labeled recordings to draw")
    by_file = _segments_by_file(run["segments"])
    rows = []
    for key in keys[:max_recordings]:
        boxes = [(s.start_s, s.end_s, s.label, s.confidence) for s in by_file.get(key, [])]
        svg = h.timeline_svg(durations[key], boxes, run["labels"], scores.get(key))
        rows.append(f'<tr class="timeline-row"><td class="file" title="{h.esc(key)}">{h.esc(key)}'
                    f'</td><td class="track">{svg}</td><td class="num">'
                    f'{h.esc(h.fmt_time(durations[key]))}</td><td class="num">'
                    f"{len(by_file.get(key, []))}</td></tr>")
    body = h.legend(run["labels"])
    body += ('<table class="timelines"><thead><tr><th>recording</th><th>segments over time'
             + (" (lines: window scores)" if scores else "") +
             '</th><th class="num">length</th><th class="num">segments</th></tr></thead>'
             f"<tbody>{''.join(rows)}</tbody></table>")
    left_out = len(keys) - max_recordings
    if left_out > 0:
        body += h.note(f"{left_out} more recordings not drawn (of {len(keys)}); raise "
                       "--max-recordings to see them")
    labeled = run["summary"].get("files_labeled")
    if isinstance(labeled, int) and labeled > len(keys) and not run["summary"].get("run_id"):
        body += h.note(f"{labeled - len(keys)} labeled recordings had no segments and no "
                       "per-recording files; label with --formats raven or --scores to list them")
    if not scores:
        body += h.muted("no per-window scores: label with --scores to draw them")
    return body


def top_segments_body(run, durations, config, config_note, top) -> str:
    ranked = top_segments(run["segments"], top)
    if not ranked:
        return h.note("no segments to show")
    if importlib.util.find_spec("matplotlib") is None:
        return h.note("matplotlib is not installed: no spectrogram thumbnails")
    color = {l: h.label_color(i) for i, l in enumerate(run["labels"])}
    cards = [_segment_card(run, s, durations.get(s.file, s.end_s), config,
                           color.get(s.label, "#888")) for s in ranked]
    body = h.muted(f"the {len(ranked)} highest-confidence segments of "
                   f"{len(run['segments'])}: log-mel spectrograms ({config.mel_min_hz:g}–"
                   f"{config.mel_max_hz:g} Hz, low at the bottom) with {CONTEXT_S:g} s of "
                   "context; the segment lies between the marks")
    if config_note:
        body += h.note(config_note)
    return body + f'<div class="cards">{"".join(cards)}</div>'


def _segment_card(run, seg, duration_s, config, color) -> str:
    path = find_audio(seg.file, run["audio_roots"])
    if path is None:
        picture = h.note("audio not found: pass --audio-root (the --input of 'earmark label')")
        caption = ""
    else:
        try:
            png, caption = thumbnail(path, seg, duration_s, config, color)
            picture = h.png_img(png, f"log-mel of {seg.label} in {seg.file}")
        except Exception as e:  # unreadable now: say so on the card, keep the page
            picture, caption = h.note(f"cannot read the audio: {type(e).__name__}: {e}"[:200]), ""
    return (f'<div class="card">{picture}<div class="meta">'
            f'<i class="swatch" style="background:{color}"></i><b>{h.esc(seg.label)}</b> '
            f"{seg.confidence:.3f}<br>{h.esc(seg.file)}<br>"
            f"{h.esc(h.fmt_time(seg.start_s))} – {h.esc(h.fmt_time(seg.end_s))}"
            f" ({seg.end_s - seg.start_s:.2f} s){'<br>' + h.esc(caption) if caption else ''}"
            "</div></div>")


def dead_letter_body(run) -> str:
    dead = run["dead"]
    failed = run["summary"].get("files_failed")
    if not dead and failed:
        return h.note(f"run.json counts {failed} failed files, but dead_letter.jsonl lists "
                      "none: the run folder is incomplete")
    if not dead:
        return h.muted("no failed files")
    reasons = Counter(d.get("reason", "?") for d in dead)
    body = h.table(["reason", "files"], [[h.esc(r), str(n)] for r, n in sorted(reasons.items())],
                   {1})
    rows = [[h.esc(d.get("file", "")), h.esc(d.get("stage", "")), h.esc(d.get("reason", "")),
             h.esc(d.get("detail", ""))]
            for d in sorted(dead, key=lambda d: d.get("file", ""))[:MAX_DEAD_LETTER_ROWS]]
    body += "<h3>Files</h3>" + h.table(
        ["file", "stage", "reason", "detail"], rows)
    if len(dead) > MAX_DEAD_LETTER_ROWS:
        body += h.note(f"{len(dead) - MAX_DEAD_LETTER_ROWS} more in dead_letter.jsonl")
    return body


# --- model ----------------------------------------------------------------------------------

def read_model(model_dir: str, evaluation: str = None, event_evaluation: str = None) -> dict:
    """model.json, history.json, evaluation.json, event_evaluation.json and evaluate's PNGs
    of a model dir."""
    if not os.path.isdir(model_dir):
        raise UserError(f"--model {model_dir}: no such folder; point it at the --model-dir "
                        "of 'earmark train'")
    meta = model_files.read_local_meta(model_dir)
    history_path = os.path.join(model_dir, HISTORY_FILE)
    history = _read_json(history_path, "history", "re-run 'earmark train'") \
        if os.path.isfile(history_path) else None
    eval_path = _evaluation_path(model_dir, evaluation)
    report = _read_json(eval_path, "--evaluation", "re-run 'earmark evaluate'") if eval_path else None
    eval_dir = os.path.dirname(eval_path) if eval_path else model_dir
    pngs = {name: _read_bytes(os.path.join(eval_dir, name)) for name in
            ("training_curves.png", "precision_recall.png")}
    event_path = _event_evaluation_path(model_dir, event_evaluation)
    events = _read_json(event_path, "--event-evaluation", "re-run 'earmark evaluate "
                        "--annotations'") if event_path else None
    if events is not None and (not isinstance(events, dict) or events.get("unit") != "events"):
        raise UserError(f"{event_path} is not an event evaluation (no \"unit\": \"events\"); "
                        "give the event_evaluation.json of 'earmark evaluate --input "
                        "recordings/ --annotations tables/'")
    return {"dir": model_dir, "meta": meta, "history": history, "evaluation": report,
            "evaluation_path": eval_path, "event_evaluation": events,
            "event_evaluation_path": event_path, "pngs": pngs,
            "model_id": _model_id(model_dir, meta)}


def _evaluation_path(model_dir, evaluation):
    if evaluation:
        path = os.path.join(evaluation, EVALUATION_FILE) if os.path.isdir(evaluation) else evaluation
        if not os.path.isfile(path):
            raise UserError(f"--evaluation {evaluation}: no evaluation.json there; point it at "
                            "the --report folder of 'earmark evaluate'")
        return path
    path = os.path.join(model_dir, EVALUATION_FILE)
    return path if os.path.isfile(path) else None


def _event_evaluation_path(model_dir, event_evaluation):
    if event_evaluation:
        path = (os.path.join(event_evaluation, EVENT_EVALUATION_FILE)
                if os.path.isdir(event_evaluation) else event_evaluation)
        if not os.path.isfile(path):
            raise UserError(f"--event-evaluation {event_evaluation}: no event_evaluation.json "
                            "there; point it at the --report folder (default: the model "
                            "folder) of 'earmark evaluate --annotations'")
        return path
    path = os.path.join(model_dir, EVENT_EVALUATION_FILE)
    return path if os.path.isfile(path) else None


def _read_bytes(path):
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def _model_id(model_dir, meta):
    """The id 'earmark label' gives this model; None when it needs a missing serving file."""
    serving = os.path.join(model_dir, model_files.model_files(meta)[1])
    if not meta.get("model_id") and not os.path.isfile(serving):
        return None
    return model_files.model_id(meta, lambda name: _read_bytes(os.path.join(model_dir, name)))


def model_body(model) -> str:
    return (h.section("metrics", "Metrics", metrics_body(model), level=3)
            + h.section("event-detection", "Event detection", event_detection_body(model),
                        level=3)
            + h.section("curves", "Curves", curves_body(model), level=3)
            + h.section("confusion-matrix", "Confusion matrix", confusion_body(model), level=3))


def metrics_body(model) -> str:
    meta = model["meta"]
    validation = meta.get("metrics", {}).get("validation", {})
    best = meta.get("metrics", {}).get("best_epoch", {})
    training = meta.get("training", {})
    pairs = [("model id", model["model_id"] or "?"), ("folder", os.path.abspath(model["dir"])),
             ("labels", ", ".join(meta.get("labels", []))),
             ("base", meta.get("base", {}).get("name", "?")),
             ("strategy", meta.get("strategy", {}).get("used", "?")),
             ("training examples", ", ".join(f"{k} {v}" for k, v in
                                             training.get("examples", {}).items())),
             ("epochs run", training.get("epochs_run", "?")),
             ("best epoch", best.get("epoch", "?"))]
    pairs += [(f"validation {k}", v) for k, v in validation.items()]
    body = h.key_values(pairs)
    report = model["evaluation"]
    thresholds = {l: pp["threshold"] for l, pp in meta["post_processing"].items()}
    if report:
        body += _evaluation_table(report, thresholds)
    else:
        body += h.table(["label", "threshold"], [[h.esc(l), f"{thresholds[l]:g}"]
                                                  for l in meta.get("labels", [])], {1})
        body += h.note("no evaluation.json: run 'earmark evaluate --model MODEL_DIR --data "
                       "PREPARED' for per-class metrics, the confusion matrix and PR curves")
    return body


def _evaluation_table(report, thresholds) -> str:
    head = ("<h3>Evaluation</h3>" + h.key_values([
        ("source", f"{report.get('source', '?')} ({report.get('split', 'clips')})"),
        ("examples", report.get("examples", "?")), ("accuracy", report.get("accuracy", "?")),
        ("macro F1", report.get("macro_f1", "?")),
        ("ROC AUC (macro)", report.get("roc_auc_macro", "?"))]))
    at = report.get("at_thresholds", {})
    rows = [[h.esc(l), *(h.esc("–" if m.get(k) is None else m.get(k)) for k in
                         ("precision", "recall", "f1", "support", "roc_auc")),
             h.esc(thresholds.get(l, "–")), h.esc(at.get(l, {}).get("recall", "–"))]
            for l, m in report.get("per_class", {}).items()]
    return head + h.table(["label", "precision", "recall", "F1", "support", "ROC AUC",
                           "threshold", "recall at threshold"], rows, set(range(1, 8)))


def curves_body(model) -> str:
    parts = []
    curves = model["pngs"]["training_curves.png"] or h.history_png(model["history"])
    if curves:
        parts.append(h.figure(curves, "training: loss and accuracy per epoch "
                                      "(val_: validation split)"))
    if model["pngs"]["precision_recall.png"]:
        parts.append(h.figure(model["pngs"]["precision_recall.png"],
                              "precision-recall per label ('earmark evaluate')"))
    body = f'<div class="plots">{"".join(parts)}</div>' if parts else ""
    if not curves:
        body += h.note("no training history (history.json) in the model folder")
    if not model["pngs"]["precision_recall.png"]:
        body += h.muted("no precision-recall curves: they come with 'earmark evaluate'")
    return body


def confusion_body(model) -> str:
    report = model["evaluation"]
    cm = (report or {}).get("confusion_matrix")
    if not cm:
        return h.note("no confusion matrix: run 'earmark evaluate' on held-out data "
                      "(it writes evaluation.json into the model folder)")
    labels, matrix = cm["labels"], cm["rows_true_cols_predicted"]
    peak = max((v for row in matrix for v in row), default=0) or 1
    rows = "".join(
        f"<tr><th>{h.esc(labels[i])}</th>" + "".join(
            f'<td class="num" style="background:rgba(37,99,235,{0.08 + 0.8 * v / peak:.2f});'
            f'color:{"#fff" if v / peak > 0.5 else "#1d2733"}">{int(v)}</td>' for v in row)
        + "</tr>" for i, row in enumerate(matrix))
    head = "<tr><th>true ↓ predicted →</th>" + "".join(f"<th>{h.esc(l)}</th>" for l in labels)
    return (f'<table class="cm"><thead>{head}</tr></thead><tbody>{rows}</tbody></table>'
            + h.muted(f"{report.get('examples', '?')} examples, {report.get('unit', 'clips')}"))


# --- model: event detection -----------------------------------------------------------------

PP_COLUMNS = (("threshold", "threshold"), ("smoothing_windows", "smoothing (windows)"),
              ("min_duration_s", "min duration (s)"), ("max_gap_s", "max gap (s)"),
              ("extend_s", "widened by (s)"))


def _fmt(value, spec=".3f") -> str:
    """A number as text ('–' for a missing or non-numeric value), escaped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else h.esc(value)
    try:
        return h.esc(format(value, spec))
    except ValueError:  # e.g. a float where a count was expected
        return h.esc(format(value, "g"))


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def event_detection_body(model) -> str:
    meta = model["meta"]
    body = "<h3>Post-processing the model ships</h3>" + shipped_post_processing_body(meta)
    report = model["event_evaluation"]
    if report:
        body += "<h3>Event evaluation</h3>" + event_evaluation_body(report, meta)
    else:
        body += h.note("no event_evaluation.json: run 'earmark evaluate --model MODEL_DIR "
                       "--input recordings/ --annotations tables/' to score the events "
                       "'earmark label' finds against annotated long recordings (event "
                       "F1 at IoU 0.5, onset collar, segment F1, onset and offset errors)")
    return body


def shipped_post_processing_body(meta) -> str:
    """Per label: the settings 'earmark label' uses by default (model.json
    `post_processing`, `segments.model_post_processing`) and the calibration figures."""
    calibration = meta.get("calibration")
    measured = _dict(_dict(calibration).get("per_label"))
    background = set(meta["background_labels"])
    rows = []
    for l, (settings, sources) in model_post_processing(meta).items():
        m = _dict(measured.get(l))
        f1 = next((v for k, v in m.items() if k.startswith("event_f1")), None)
        scores = [_fmt(f1), _fmt(m.get("precision")), _fmt(m.get("recall")),
                  _fmt(m.get("truth_events"), "d"), _fmt(m.get("predicted_events"), "d")]
        if l in background:
            rows.append([h.esc(l), *["–"] * len(PP_COLUMNS), "background: not written",
                         *scores])
            continue
        source = "calibrated" if set(sources.values()) == {"model"} \
            else "model threshold, other settings default"
        rows.append([h.esc(l), *(_fmt(settings.get(f), "g") for f, _ in PP_COLUMNS),
                     h.esc(source), *scores])
    iou = _dict(calibration).get("min_iou", 0.5)
    table = h.table(["label", *(name for _, name in PP_COLUMNS), "from",
                     f"event F1 (IoU ≥ {iou:g})" if isinstance(iou, (int, float))
                     else "event F1", "precision", "recall", "truth events",
                     "predicted events"], rows, {1, 2, 3, 4, 6, 7, 8, 9, 10})
    if not isinstance(calibration, dict):
        return table + h.note("model.json has no calibration: this model was trained before "
                              "'earmark train' calibrated event post-processing, so 'earmark "
                              "label' uses its thresholds with default smoothing, minimum "
                              "duration and gap; retrain to calibrate them per label")
    audio_s = calibration.get("audio_s")
    pairs = [("calibrated on", calibration.get("source", "?"))]
    if calibration.get("split"):
        pairs.append(("split", calibration["split"]))
    if isinstance(audio_s, (int, float)):
        pairs.append(("audio", f"{h.fmt_time(audio_s)} ({audio_s:g} s)"))
    if isinstance(calibration.get("hop_s"), (int, float)):
        pairs.append(("window hop", f"{calibration['hop_s']:g} s"))
    body = h.key_values(pairs) + table
    if not measured:
        body += h.muted("no calibration figures: the settings are earmark's defaults")
    else:
        body += h.muted("event F1, precision and recall: the chosen settings' events against "
                        "the annotated events of the data above (one-to-one matching)")
    return body


def event_evaluation_body(report, meta) -> str:
    """event_evaluation.json (model.event_metrics.score plus what was scored) as key
    facts and a per-label table with the overall (micro-averaged) row."""
    per_label = _dict(report.get("per_label"))
    overall = _dict(report.get("overall"))
    first = _dict(next(iter(per_label.values()), {}))

    def setting(block, key, default):
        value = _dict(overall.get(block)).get(key, _dict(first.get(block)).get(key, default))
        return value if isinstance(value, (int, float)) else default

    iou, collar, seg = (setting("iou", "threshold", 0.5), setting("onset_collar", "collar_s", 0.5),
                        setting("segment", "segment_s", 1.0))
    failed = report.get("failed") or []
    problems = report.get("annotation_problems") or []
    pairs = [("recordings", report.get("source", "?")),
             ("annotations", report.get("annotations", "?")),
             ("model scored", report.get("model", "?")),
             ("recordings scored", f"{report.get('recordings_scored', '?')} of "
                                   f"{report.get('recordings_annotated', '?')} annotated"),
             ("labels scored", ", ".join(map(str, report.get("labels_scored") or per_label))),
             ("macro F1 (IoU)", _fmt_text(overall.get("macro_f1_iou")))]
    if failed:
        pairs.append(("recordings failed", len(failed)))
    if report.get("recordings_unannotated"):
        pairs.append(("recordings without annotations (not scored)",
                      len(report["recordings_unannotated"])))
    if problems:
        pairs.append(("annotation problems", f"{len(problems)} (listed in "
                                             "event_evaluation.json)"))
    if report.get("annotation_labels_not_in_model"):
        pairs.append(("annotated labels not in the model",
                      ", ".join(map(str, report["annotation_labels_not_in_model"]))))

    def row(name_html, truth, predicted, m):
        return [name_html, _fmt(truth, "d"), _fmt(predicted, "d"),
                *(_fmt(_dict(m.get("iou")).get(k)) for k in ("precision", "recall", "f1")),
                _fmt(_dict(m.get("onset_collar")).get("f1")),
                _fmt(_dict(m.get("segment")).get("f1")),
                _fmt(m.get("median_onset_error_s")), _fmt(m.get("median_offset_error_s"))]

    rows = [row(h.esc(l), _dict(m).get("truth"), _dict(m).get("predicted"), _dict(m))
            for l, m in per_label.items()]
    if overall:
        block = _dict(overall.get("iou"))
        truths = [_dict(m).get("truth") for m in per_label.values()]
        preds = [_dict(m).get("predicted") for m in per_label.values()]
        truth = (sum(truths) if truths and all(isinstance(t, int) for t in truths)
                 else _sum(block.get("tp"), block.get("fn")))
        predicted = (sum(preds) if preds and all(isinstance(p, int) for p in preds)
                     else _sum(block.get("tp"), block.get("fp")))
        rows.append(row("<b>overall</b> (micro)", truth, predicted, overall))
    body = h.key_values(pairs) + h.table(
        ["label", "truth events", "predicted", f"precision (IoU ≥ {iou:g})",
         f"recall (IoU ≥ {iou:g})", f"F1 (IoU ≥ {iou:g})", f"onset F1 (±{collar:g} s)",
         f"segment F1 ({seg:g} s)", "median onset error (s)", "median offset error (s)"],
        rows, set(range(1, 10)))
    if not per_label:
        body += h.note("event_evaluation.json scores no label")
    body += _post_processing_drift(report, meta)
    if failed:
        names = ", ".join(str(_dict(f).get("file", "?")) for f in failed[:5])
        body += h.note(f"{len(failed)} recordings could not be decoded and were not scored: "
                       f"{names}{' …' if len(failed) > 5 else ''}")
    return body


def _fmt_text(value) -> str:
    """A metric for h.key_values (which escapes): '–' when missing."""
    return "–" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _sum(a, b):
    return a + b if isinstance(a, int) and isinstance(b, int) else None


def _post_processing_drift(report, meta) -> str:
    """A note when the evaluation scored other settings than model.json ships now."""
    shipped = _dict(meta.get("post_processing"))
    used = _dict(report.get("post_processing"))

    def same(a, b):
        try:  # settings an older evaluate wrote without a field differ from every card
            return PostProcessing.from_dict(a) == PostProcessing.from_dict(b)
        except (KeyError, TypeError, ValueError):
            return False
    differ = [l for l, settings in used.items()
              if l in shipped and not same(_dict(settings), _dict(shipped[l]))]
    if not differ:
        return ""
    return h.note(f"event_evaluation.json scored other post-processing than model.json ships "
                  f"now for {', '.join(map(str, differ))}: re-run 'earmark evaluate "
                  "--annotations' to score the current settings")
