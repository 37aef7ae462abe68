"""What `earmark report` draws: the page, sections, tables, notes, SVG timelines and PNG
pictures (matplotlib, Agg). Every text that came from a file goes through `esc`, and
nothing refers outside the page (no URLs, scripts or fonts)."""
import base64
import html
import io
import math

# one color per label, in the model's label order (matplotlib's tab10, then tab20's pales)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
TIMELINE_PX = 1000   # drawing units across a timeline row

CSS = """
:root { --ink:#1d2733; --muted:#5b6775; --line:#dde3ea; --bg:#f6f8fa; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#1d2733; color:#fff; padding:18px 32px; }
header h1 { margin:0; font-size:22px; font-weight:600; }
header p { margin:4px 0 0; color:#c9d3de; font-size:13px; }
nav { padding:8px 32px; background:#fff; border-bottom:1px solid var(--line); font-size:13px; }
nav a { margin-right:16px; color:var(--accent); text-decoration:none; }
main { max-width:1200px; margin:0 auto; padding:8px 32px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px;
          padding:16px 20px; margin:18px 0; }
section section { border:none; padding:0; margin:18px 0 0; }
h2 { margin:0 0 12px; font-size:18px; }
h3 { margin:14px 0 8px; font-size:15px; }
section section > h3:first-child { margin-top:0; }
table { border-collapse:collapse; font-size:13px; }
th, td { text-align:left; padding:4px 10px; border-bottom:1px solid var(--line);
         vertical-align:top; }
th { color:var(--muted); font-weight:600; }
table + table { margin-top:14px; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.kv th { width:230px; }
.note { color:#7a5200; background:#fff8e6; border:1px solid #f3dca6; border-radius:6px;
        padding:6px 10px; margin:8px 0; font-size:13px; }
.muted { color:var(--muted); }
.bar { display:inline-block; height:12px; border-radius:2px; vertical-align:middle; }
.legend span { margin-right:14px; white-space:nowrap; }
.swatch { display:inline-block; width:12px; height:12px; border-radius:2px;
          vertical-align:-1px; margin-right:4px; }
.timelines td.file { max-width:260px; overflow:hidden; text-overflow:ellipsis;
                     white-space:nowrap; }
.timelines td.track { width:100%; min-width:400px; padding:2px 6px; }
.timelines svg.timeline { display:block; width:100%; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(260px,1fr)); gap:14px; }
.card { border:1px solid var(--line); border-radius:6px; padding:8px; background:#fff; }
.card img { display:block; width:100%; height:auto; image-rendering:auto;
            border-radius:3px; background:#000; }
.card .meta { font-size:12px; margin-top:6px; word-break:break-all; }
.plots { display:flex; flex-wrap:wrap; gap:18px; align-items:flex-start; }
.plots figure { margin:0; }
.plots img { max-width:100%; height:auto; }
figcaption { color:var(--muted); font-size:12px; }
.cm td.num { min-width:44px; text-align:center; }
code { background:#eef1f5; padding:1px 4px; border-radius:3px; font-size:12px; }
"""


def esc(value) -> str:
    """Any value as HTML-safe text (quotes too: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


def label_color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def page(title: str, subtitle: str, sections: list) -> str:
    """The whole document: sections are (id, heading, body html)."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(heading)}</a>' for sid, heading, _ in sections)
    body = "".join(section(sid, heading, inner) for sid, heading, inner in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")


def section(section_id: str, heading: str, body: str, level: int = 2) -> str:
    return (f'<section id="{esc(section_id)}"><h{level}>{esc(heading)}</h{level}>'
            f"{body}</section>")


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def muted(text: str) -> str:
    return f'<p class="muted">{esc(text)}</p>'


def table(headers: list, rows: list, numeric: set = frozenset(), css_class: str = "") -> str:
    """Rows of already-safe cell HTML; `numeric` holds the column indexes to right-align."""
    def cell(tag, i, content):
        return f'<{tag} class="num">{content}</{tag}>' if i in numeric else f"<{tag}>{content}</{tag}>"
    head = "".join(cell("th", i, esc(h)) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(pairs: list) -> str:
    """A two-column table of (name, value) with values escaped."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def png_img(png: bytes, alt: str, css_class: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return f'<img{cls} alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def figure(png: bytes, caption: str) -> str:
    return f"<figure>{png_img(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def bar(fraction: float, color: str, max_px: int = 240) -> str:
    width = max(1, int(round(max(0.0, min(1.0, fraction)) * max_px))) if fraction > 0 else 0
    return f'<span class="bar" style="width:{width}px;background:{color}"></span>'


def legend(labels: list) -> str:
    items = "".join(f'<span><i class="swatch" style="background:{label_color(i)}"></i>'
                    f"{esc(l)}</span>" for i, l in enumerate(labels))
    return f'<p class="legend">{items}</p>'


def fmt_time(seconds: float) -> str:
    """2.5 s below a minute, else 1:30.2 or 1:02:03.4."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def fmt_tick(seconds: float, step: float) -> str:
    """An axis label: 1.5 s / 30 s under a minute's step, else 1:30 or 1:02:00."""
    if step < 60:
        return f"{seconds:g} s" if seconds < 60 or step < 1 else fmt_time(seconds)[:-2]
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def nice_step(duration_s: float, max_ticks: int = 8) -> float:
    """A tick interval of 1, 2 or 5 × 10^k seconds below 30 s, else 1/2/5/10/15/30 min or
    1/2/... h, giving at most `max_ticks` ticks."""
    raw = max(duration_s, 1e-3) / max_ticks
    if raw > 30:
        for step in (60, 120, 300, 600, 900, 1800):
            if raw <= step:
                return float(step)
        return 3600.0 * math.ceil(raw / 3600)
    exp = 10 ** math.floor(math.log10(raw))
    return next(mult * exp for mult in (1, 2, 5, 10) if raw <= mult * exp)


def _runs(occupied: list) -> list:
    """[(first, last)] index runs of True in a list of booleans."""
    out, start = [], None
    for i, on in enumerate(occupied + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def timeline_svg(duration_s: float, segments: list, labels: list, scores=None) -> str:
    """One recording's row: a lane of boxes per label run (merged to 1/1000 of the row, so a
    night of thousands of segments stays small), a lane of score traces when there are
    scores, a time axis. x positions are percentages, so the row stretches without
    distorting its text. `segments` are (start_s, end_s, label, confidence); `scores` is
    (window centre times [n], {label: values [n]}) or None."""
    scale = TIMELINE_PX / max(duration_s, 1e-9)
    lane = 14 / max(1, len(labels))
    parts = ['<rect x="0" y="2" width="100%" height="14" fill="#f1f4f8"/>']
    for li, name in enumerate(labels):
        y = 2 + lane * li
        for a, b in _runs(_occupied([s for s in segments if s[2] == name], scale)):
            t0, t1 = a / scale, min((b + 1) / scale, duration_s)
            parts.append(f'<rect class="seg" x="{a / 10:.1f}%" y="{y:.1f}" '
                         f'width="{(b - a + 1) / 10:.1f}%" height="{lane:.1f}" '
                         f'fill="{label_color(li)}"><title>{esc(name)}: {esc(fmt_time(t0))} – '
                         f"{esc(fmt_time(t1))}</title></rect>")
    axis_y = 18
    if scores is not None:
        parts.append(_score_traces(scores, labels, scale))
        axis_y = 32
    parts += _axis(duration_s, scale, axis_y)
    return (f'<svg class="timeline" height="{axis_y + 12}" role="img" '
            f'aria-label="timeline">{"".join(parts)}</svg>')


def _occupied(segments, scale) -> list:
    """Which of the TIMELINE_PX drawing units the segments touch."""
    occupied = [False] * TIMELINE_PX
    for start, end, _, _ in segments:
        first = min(TIMELINE_PX - 1, int(start * scale))
        last = min(TIMELINE_PX, max(first + 1, int(math.ceil(end * scale))))
        occupied[first:last] = [True] * (last - first)
    return occupied


def _score_traces(scores, labels, scale) -> str:
    """Per label a thin line of its window scores (max over each drawing unit), in a
    stretched inner SVG."""
    starts, per_label = scores
    lines = []
    for li, name in enumerate(labels):
        values = per_label.get(name)
        if values is None or not len(values):
            continue
        column_max = {}
        for t, v in zip(starts, values):
            x = min(TIMELINE_PX - 1, int(t * scale))
            column_max[x] = max(float(v), column_max.get(x, 0.0))
        points = " ".join(f"{x},{11.5 - 11 * v:.1f}" for x, v in sorted(column_max.items()))
        lines.append(f'<polyline points="{points}" fill="none" stroke="{label_color(li)}" '
                     'stroke-width="1.2" opacity="0.9" vector-effect="non-scaling-stroke"/>')
    return ('<rect x="0" y="18" width="100%" height="12" fill="#f8fafc"/>'
            f'<svg x="0" y="18" width="100%" height="12" viewBox="0 0 {TIMELINE_PX} 12" '
            f'preserveAspectRatio="none" class="scores">{"".join(lines)}</svg>')


def _axis(duration_s, scale, y) -> list:
    step = nice_step(duration_s)
    out = [f'<line x1="0" y1="{y}" x2="100%" y2="{y}" stroke="#9aa5b1"/>']
    t = 0.0
    while t <= duration_s + 1e-9:
        pct = t * scale / 10
        anchor = "start" if pct < 3 else ("end" if pct > 97 else "middle")
        out.append(f'<line x1="{pct:.2f}%" y1="{y}" x2="{pct:.2f}%" y2="{y + 3}" '
                   f'stroke="#9aa5b1"/><text x="{pct:.2f}%" y="{y + 11}" font-size="9" '
                   f'fill="#5b6775" text-anchor="{anchor}">{esc(fmt_tick(t, step))}</text>')
        t += step
    return out


# --- PNG pictures (matplotlib's Agg canvas; no pyplot state) --------------------------------

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def spectrogram_png(mel, span_s: float, marks_s: tuple, color: str) -> bytes:
    """A small log-mel picture ([frames, bins], low bins at the bottom) with the segment's
    start and end marked where they fall inside."""
    import numpy as np
    from matplotlib.figure import Figure
    fig = Figure(figsize=(3.2, 1.4), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    span_s = max(span_s, 1e-3)
    ax.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
              extent=[0, span_s, 0, mel.shape[1]], vmin=np.percentile(mel, 5), vmax=mel.max())
    for t in marks_s:
        if 0 < t < span_s:
            ax.axvline(t, color=color, linewidth=2)
            ax.axvline(t, color="white", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, span_s)
    ax.set_axis_off()
    return _png(fig)


def history_png(history):
    """Loss and accuracy per epoch (training and validation) as a PNG, or None."""
    if not history or not history.get("loss"):
        return None
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(9, 3.2), dpi=100)
    for i, key in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for k in (key, f"val_{key}"):
            if history.get(k):
                ax.plot(range(1, len(history[k]) + 1), history[k], label=k)
        ax.set_xlabel("epoch"), ax.set_title(key), ax.legend()
    fig.tight_layout()
    return _png(fig)
