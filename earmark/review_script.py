"""review.html's own style and script (inline in the page; no library, no network).

The script keeps one verdict per row (`yes`, `no`, another label's name, or empty), shows
it, keeps it in the browser's localStorage under the page's id (a reload loses nothing),
and saves `verdicts.csv`: the page's rows (cells as `annotations.verdict_cells` wrote them)
with the verdicts, quoted as Python's csv module quotes (a field holding a comma, a double
quote or a line break), "\\n" line ends — the bytes `annotations.verdict_table` writes.
Keys: y yes, n no, 1-9 the model's labels, l the row's label list (arrows choose, Enter
moves on), u / Backspace clear, arrows (or j/k) move, space play, s save. A verdict by key
or button moves to the next row.
"""

STYLE = """
#toolbar { position:sticky; top:0; z-index:2; background:#fff; border-bottom:1px solid var(--line);
           padding:8px 32px; display:flex; gap:16px; align-items:center; flex-wrap:wrap;
           font-size:13px; }
#toolbar .keys span { margin-right:6px; white-space:nowrap; }
#progress { font-weight:600; }
kbd { border:1px solid #c3cad3; border-bottom-width:2px; border-radius:3px; padding:0 4px;
      font:12px ui-monospace,monospace; background:#f6f8fa; }
#items { width:100%; background:#fff; margin-top:14px; }
#items td { vertical-align:middle; }
tr.item { cursor:pointer; }
tr.item.current { outline:3px solid var(--accent); outline-offset:-3px; }
tr.item.v-yes { background:#f0fdf4; }
tr.item.v-no { background:#fef2f2; }
tr.item.v-other { background:#eff6ff; }
td.media img.spectrogram { display:block; width:480px; max-width:100%; height:auto;
                           border-radius:3px; background:#000; }
td.media audio { display:block; width:480px; max-width:100%; margin-top:4px; }
td.what { word-break:break-all; max-width:320px; }
td.verdict button, td.verdict select { margin:2px 4px 2px 0; font-size:13px; }
td.verdict .shown { margin-top:4px; font-weight:600; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const rows = Array.from(document.querySelectorAll("tr.item"));
  const verdicts = data.verdicts.slice();
  const storeKey = "earmark-review:" + data.id;
  let current = 0;

  function load() {
    if (!data.id) return;
    try {
      const saved = JSON.parse(localStorage.getItem(storeKey) || "null");
      if (Array.isArray(saved) && saved.length === verdicts.length) {
        saved.forEach(function (v, i) { if (typeof v === "string") verdicts[i] = v; });
      }
    } catch (e) { /* no storage (a private window): verdicts live until the page closes */ }
  }
  function store() {
    if (!data.id) return;
    try { localStorage.setItem(storeKey, JSON.stringify(verdicts)); } catch (e) { }
  }
  function show(i) {
    const row = rows[i], v = verdicts[i];
    const other = v !== "" && v !== "yes" && v !== "no";
    row.classList.toggle("v-yes", v === "yes");
    row.classList.toggle("v-no", v === "no");
    row.classList.toggle("v-other", other);
    row.querySelector(".shown").textContent = v ? "verdict: " + v : "";
    const shown = v === "yes" ? data.rows[i][3] : v;   // the label the verdict stands for
    row.querySelector("select").value = data.labels.indexOf(shown) >= 0 ? shown : "";
  }
  function progress() {
    const done = verdicts.filter(function (v) { return v !== ""; }).length;
    document.getElementById("progress").textContent =
      done + " of " + verdicts.length + " reviewed";
  }
  function focus(i, scroll) {
    if (!rows.length) return;
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, k) { r.classList.toggle("current", k === current); });
    if (scroll) rows[current].scrollIntoView({block: "nearest"});
  }
  function pauseAll(except) {
    document.querySelectorAll("audio").forEach(function (a) { if (a !== except) a.pause(); });
  }
  function setVerdict(i, v, advance) {
    if (v === data.rows[i][3]) v = "yes";   // the item's own label: a yes
    verdicts[i] = v;
    show(i);
    progress();
    store();
    if (advance && i + 1 < rows.length) { pauseAll(null); focus(i + 1, true); }
  }
  function play(i) {
    const a = rows[i].querySelector("audio");
    if (!a) return;
    if (a.paused) { pauseAll(a); a.currentTime = 0; a.play().catch(function () { }); }
    else a.pause();
  }
  function cell(text) {
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  function csvText() {
    const lines = [data.columns.map(cell).join(",")];
    data.rows.forEach(function (r, i) {
      lines.push(r.concat([verdicts[i]]).map(cell).join(","));
    });
    return lines.join("\n") + "\n";
  }
  function save() {
    const url = URL.createObjectURL(new Blob([csvText()], {type: "text/csv;charset=utf-8"}));
    const a = document.createElement("a");
    a.href = url;
    a.download = "verdicts.csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }
  window.earmarkReview = {csvText: csvText, verdicts: verdicts};

  rows.forEach(function (row, i) {
    row.addEventListener("click", function () { focus(i, false); });
    row.querySelectorAll("button[data-verdict]").forEach(function (b) {
      b.addEventListener("click", function (e) {
        e.stopPropagation();
        b.blur();
        focus(i, false);
        setVerdict(i, b.dataset.verdict, b.dataset.verdict !== "");
      });
    });
    const select = row.querySelector("select");
    select.addEventListener("click", function (e) { e.stopPropagation(); focus(i, false); });
    select.addEventListener("change", function () {   // arrows in a closed list change it:
      if (select.value) setVerdict(i, select.value, false);  // Enter moves on (keydown)
    });
    const audio = row.querySelector("audio");
    if (audio) audio.addEventListener("play", function () { pauseAll(audio); });
  });
  document.getElementById("save").addEventListener("click", function (e) {
    e.currentTarget.blur();
    save();
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || !rows.length) return;
    const tag = e.target.tagName;
    if (tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") {
      if (e.key === "Escape" || e.key === "Enter") {
        e.preventDefault();
        e.target.blur();
        if (e.key === "Enter" && verdicts[current] !== "") focus(current + 1, true);
      }
      return;
    }
    const k = e.key;
    if (k === "y") setVerdict(current, "yes", true);
    else if (k === "n") setVerdict(current, "no", true);
    else if (/^[1-9]$/.test(k) && Number(k) <= data.labels.length)
      setVerdict(current, data.labels[Number(k) - 1], true);
    else if (k === "l") rows[current].querySelector("select").focus();
    else if (k === "u" || k === "Backspace" || k === "Delete") setVerdict(current, "", false);
    else if (k === "ArrowDown" || k === "j" || k === "Enter") focus(current + 1, true);
    else if (k === "ArrowUp" || k === "k") focus(current - 1, true);
    else if (k === " ") play(current);
    else if (k === "s") save();
    else return;
    e.preventDefault();
  });
  load();
  rows.forEach(function (_, i) { show(i); });
  progress();
  focus(0, false);
})();
"""
