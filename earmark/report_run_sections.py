"""`earmark report`, the run's page sections: summary and post-processing, segments per
label, timelines, top segments (with thumbnails) and failed files; each `*_body` returns
HTML built with report_html."""
import importlib.util
from collections import Counter, defaultdict

import numpy as np

from earmark import report_html as h
from earmark.report_model_sections import PP_COLUMNS, PP_NUMERIC, as_dict, fmt_number
from earmark.report_runs import find_audio, read_scores, recording_duration
from earmark.report_thumbnails import CONTEXT_S, thumbnail

MAX_DEAD_LETTER_ROWS = 200


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
             ("arithmetic", (s.get("numeric_precision") or {}).get("here", "?")),
             ("segments", sum((s.get("segments_per_label") or {}).values())),
             ("window hop", f"{s.get('hop_s', '?')} s"), ("formats", ", ".join(s.get("formats", [])))]
    if s.get("run_id"):
        pairs.append(("incremental run", f"{s['run_id']} ({s.get('files_new_or_changed')} new or "
                                         "changed files; counts are this run's)"))
    post = as_dict(s.get("post_processing"))
    not_written = [l for l, e in post.items() if as_dict(e).get("written") is False]
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
        entry = as_dict(entry)
        settings, sources = as_dict(entry.get("settings")), as_dict(entry.get("from"))
        cells = []
        for field, _ in PP_COLUMNS:
            source = sources.get(field)
            tag = "" if source is None else (
                f' <b class="src">{h.esc(source)}</b>' if source == "flag"
                else f' <span class="muted src">{h.esc(source)}</span>')
            cells.append(fmt_number(settings.get(field), "g") + tag)
        written = entry.get("written")
        rows.append([h.esc(label), *cells, "yes" if written is not False else
                     "no (background)"])
    return ("<h3>Post-processing</h3>"
            + h.table(["label", *(name for _, name in PP_COLUMNS), "segments written"], rows,
                      PP_NUMERIC)
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
