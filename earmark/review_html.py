"""review.html: one self-contained page to verify items (`earmark review`, and any list of
file/start/end/label items): per item its log-mel spectrogram and an audio player with
CONTEXT_S of context either side (both inline as data: URIs, decoded with model/audio.py),
buttons and keyboard shortcuts for a verdict, and a button that saves `verdicts.csv` — the
columns and bytes of review.csv (`annotations.verdict_table`), verdicts filled in.

Nothing refers outside the page: the data, the script and the style are inline.
TensorFlow (the models' own log-mel frontend) is imported on the first spectrogram."""
import base64
import io
import json

import numpy as np

from earmark import report_html as h
from earmark.model.annotations import VERDICT_COLUMNS, verdict_cells
from earmark.report_thumbnails import log_mel, read_native_excerpt
from earmark.review_script import SCRIPT, STYLE

CONTEXT_S = 1.0          # audio heard and shown either side of an item
MAX_ITEM_S = 20.0        # a longer item: its first seconds
MAX_AUDIO_RATE_HZ = 32000  # audio above it is resampled for the page (its size)
SHORTCUT_LABELS = 9      # labels 1-9 have a digit key


def clip(path: str, item, duration_s: float = None):
    """(mono samples, rate, t0, t1) of an item's audio with CONTEXT_S either side, cut to
    MAX_ITEM_S of the item and to the recording."""
    t0 = max(0.0, item.start_s - CONTEXT_S)
    t1 = min(item.end_s, item.start_s + MAX_ITEM_S) + CONTEXT_S
    if duration_s:
        t1 = min(t1, duration_s)
    samples, rate = read_native_excerpt(path, t0, t1)
    if rate > MAX_AUDIO_RATE_HZ:
        from earmark.model import audio
        samples, rate = audio.resample(samples, rate, MAX_AUDIO_RATE_HZ), MAX_AUDIO_RATE_HZ
    return samples, rate, t0, t0 + len(samples) / rate


def wav_data_uri(samples: np.ndarray, rate: int) -> str:
    """16-bit PCM mono WAV as a data: URI (peaks above full scale are clipped)."""
    import soundfile as sf
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def media(path, item, config, color: str, duration_s: float = None) -> str:
    """The item's spectrogram and audio player, or a note saying why there are none."""
    if path is None:
        return h.note("audio not found: pass --audio-root (a local folder holding the recordings)")
    try:
        samples, rate, t0, t1 = clip(path, item, duration_s)
        from earmark.model import audio
        mel = log_mel(audio.resample(samples, rate, config.sample_rate_hz,
                                     config.resample_quality), config)
        png = h.spectrogram_png(mel, t1 - t0, (item.start_s - t0, item.end_s - t0), color)
    except Exception as e:  # unreadable now: say so in the row, keep the page
        return h.note(f"cannot read the audio: {type(e).__name__}: {e}"[:200])
    return (h.png_img(png, f"log-mel of {item.label} in {item.file}", "spectrogram") +
            f'<audio controls preload="auto" src="{wav_data_uri(samples, rate)}" '
            f'data-start="{item.start_s - t0:.3f}"></audio>')


def page(title: str, subtitle: str, items: list, labels: list, audio_of, config,
         durations: dict = None, page_id: str = "") -> str:
    """The whole document. `items`: objects with VERDICT_COLUMNS' attributes, in the order
    shown and saved; `labels`: the model's, offered as other verdicts; `audio_of(file)`:
    a recording's local path or None; `durations`: {file: seconds} when known; `page_id`:
    where the browser keeps verdicts between visits (one per review)."""
    durations = durations or {}
    colors = {l: h.label_color(i) for i, l in enumerate(labels)}
    rows = "".join(_row(i, item, labels, media(audio_of(item.file), item, config,
                                               colors.get(item.label, "#888"),
                                               durations.get(item.file)), colors)
                   for i, item in enumerate(items))
    data = {"id": page_id, "columns": list(VERDICT_COLUMNS), "labels": list(labels),
            "rows": [verdict_cells(item)[:-1] for item in items],
            "verdicts": [item.verdict for item in items]}
    keys = "".join(f"<span><kbd>{i + 1}</kbd> {h.esc(l)}</span>"
                   for i, l in enumerate(labels[:SHORTCUT_LABELS]))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{h.esc(title)}</title><style>{h.CSS}{STYLE}</style></head><body>"
            f"<header><h1>{h.esc(title)}</h1><p>{h.esc(subtitle)}</p></header>"
            '<div id="toolbar"><span id="progress"></span>'
            '<button id="save" type="button">Save verdicts.csv</button>'
            '<span class="keys"><kbd>y</kbd> yes <kbd>n</kbd> no '
            f'{keys} <kbd>l</kbd> another label <kbd>u</kbd> clear '
            '<kbd>↑</kbd><kbd>↓</kbd> move <kbd>space</kbd> play</span></div>'
            f'<main><table id="items"><tbody>{rows}</tbody></table></main>'
            f'<script type="application/json" id="review-data">{_json(data)}</script>'
            f"<script>{SCRIPT}</script></body></html>\n")


def _row(i: int, item, labels: list, media_html: str, colors: dict) -> str:
    options = "".join(f'<option value="{h.esc(l)}">{h.esc(l)}</option>' for l in labels)
    span = f"{h.fmt_time(item.start_s)} – {h.fmt_time(item.end_s)}"
    confidence = "" if item.confidence is None else f" {item.confidence:.3f}"
    return (f'<tr class="item" id="item-{i}" data-index="{i}">'
            f'<td class="num">{i + 1}</td><td class="media">{media_html}</td>'
            f'<td class="what"><i class="swatch" style="background:'
            f'{colors.get(item.label, "#888")}"></i><b>{h.esc(item.label)}</b>{confidence}'
            f' <span class="muted">{h.esc(item.strategy)}</span><br>{h.esc(item.file)}<br>'
            f'{h.esc(span)} ({item.end_s - item.start_s:.2f} s)</td>'
            '<td class="verdict"><button type="button" data-verdict="yes">yes</button>'
            '<button type="button" data-verdict="no">no</button>'
            f'<select aria-label="another label"><option value="">another label…</option>'
            f'{options}</select><button type="button" data-verdict="">clear</button>'
            '<div class="shown"></div></td></tr>')


def _json(data) -> str:
    """JSON safe inside a <script> element (no `</`, no `<!--`)."""
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
