"""The stylesheet and script inlined into report.html (no network: the page works opened from disk).

The script reads the page's `<script type="application/json" id="viz-data">` and the SVG's
`rect.region` elements (`data-index` is the kernel's place in placement.json). It builds every
tooltip with `textContent`, never `innerHTML`, so names from the model are shown, not parsed.
"""

CSS = """
:root { --ink: #1d2430; --muted: #5b6472; --line: #d7dbe2; --accent: #d62728; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif;
       color: var(--ink); background: var(--bg); }
header, main > section { max-width: 1600px; margin: 0 auto; padding: 0 20px; }
header h1 { font-size: 20px; margin: 16px 0 2px; }
header p { margin: 0 0 10px; color: var(--muted); }
.toolbar { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; margin: 8px 0; }
.toolbar input[type=search] { width: 280px; padding: 5px 8px; border: 1px solid var(--line); border-radius: 4px; }
.toolbar button, .toolbar select { padding: 4px 10px; border: 1px solid var(--line); border-radius: 4px;
       background: #fff; cursor: pointer; }
#match-count { color: var(--muted); min-width: 9em; }
#picture { height: 78vh; min-height: 420px; background: #fff; border: 1px solid var(--line); border-radius: 6px;
       overflow: hidden; touch-action: none; }
#picture svg { width: 100%; height: 100%; display: block; cursor: grab; user-select: none; }
#picture svg.dragging { cursor: grabbing; }
rect.region { cursor: pointer; }
rect.region:hover, rect.region.hot { stroke: #000 !important; stroke-width: 2.5px !important; }
svg.searching rect.region:not(.match) { opacity: 0.18; }
svg.searching #labels text:not(.match) { opacity: 0.25; }
svg.searching #label-halos text:not(.match) { opacity: 0.18; }
rect.region.match { stroke: #000 !important; stroke-width: 2px !important; }
#tooltip { position: fixed; z-index: 10; max-width: 520px; padding: 8px 10px; background: rgba(20, 24, 31, 0.94);
       color: #f3f5f8; border-radius: 5px; font-size: 12.5px; pointer-events: none; box-shadow: 0 2px 10px #0004; }
#tooltip strong { display: block; font-size: 13.5px; margin-bottom: 4px; word-break: break-all; }
#tooltip dl { display: grid; grid-template-columns: auto 1fr; gap: 1px 10px; margin: 0; }
#tooltip dt { color: #aab3c0; }
#tooltip dd { margin: 0; word-break: break-all; }
h2 { font-size: 16px; margin: 22px 0 8px; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; }
#summary th { font-weight: 600; color: var(--muted); width: 15em; }
#kernel-table th { position: sticky; top: 0; background: #eef0f4; cursor: pointer; white-space: nowrap; }
#kernel-table th[aria-sort=ascending]::after { content: " \\25B2"; }
#kernel-table th[aria-sort=descending]::after { content: " \\25BC"; }
#kernel-table tbody tr:hover, #kernel-table tbody tr.hot { background: #fff4c2; }
#kernel-table tr.bottleneck td:first-child { box-shadow: inset 3px 0 var(--accent); }
.table-wrap { max-height: 70vh; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
td.source { color: var(--muted); font-size: 12px; }
footer { color: var(--muted); font-size: 12px; padding: 18px 20px 30px; max-width: 1600px; margin: 0 auto; }
"""

JS = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("viz-data").textContent);
  const svg = document.querySelector("#picture svg");
  const regions = Array.from(svg.querySelectorAll("rect.region"));
  const labels = Array.from(svg.querySelectorAll("#labels text[data-index]"));
  const halos = Array.from(svg.querySelectorAll("#label-halos text[data-index]"));
  const rows = Array.from(document.querySelectorAll("#kernel-table tbody tr"));
  const tooltip = document.getElementById("tooltip");
  const regionAt = i => regions[i];
  // The SVG's own <title> tooltips would show beside ours.
  svg.querySelectorAll("rect.region > title").forEach(t => t.remove());

  // ---------------------------------------------------------------- zoom and pan
  const base = svg.viewBox.baseVal;
  const home = { x: base.x, y: base.y, w: base.width, h: base.height };
  let view = Object.assign({}, home);
  function setView(v) {
    view = v;
    svg.setAttribute("viewBox", v.x + " " + v.y + " " + v.w + " " + v.h);
  }
  function toSvg(clientX, clientY) {
    const p = svg.createSVGPoint();
    p.x = clientX; p.y = clientY;
    return p.matrixTransform(svg.getScreenCTM().inverse());
  }
  function zoomAt(p, factor) {
    const w = Math.min(home.w * 2, Math.max(home.w / 500, view.w * factor));
    const k = w / view.w;
    setView({ x: p.x - (p.x - view.x) * k, y: p.y - (p.y - view.y) * k, w: w, h: view.h * k });
  }
  function zoomCentre(factor) {
    zoomAt({ x: view.x + view.w / 2, y: view.y + view.h / 2 }, factor);
  }
  function zoomTo(box) {
    const pad = Math.max(box.w, box.h) * 0.08 + 20;
    setView({ x: box.x - pad, y: box.y - pad, w: box.w + 2 * pad, h: box.h + 2 * pad });
  }
  svg.addEventListener("wheel", e => {
    e.preventDefault();
    zoomAt(toSvg(e.clientX, e.clientY), Math.exp(e.deltaY * 0.0015));
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", e => {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, view: Object.assign({}, view), scale: svg.getScreenCTM().a, moved: false };
  });
  window.addEventListener("pointermove", e => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; svg.classList.add("dragging"); }
    setView({ x: drag.view.x - dx / drag.scale, y: drag.view.y - dy / drag.scale, w: drag.view.w, h: drag.view.h });
  });
  window.addEventListener("pointerup", () => { drag = null; svg.classList.remove("dragging"); });
  svg.addEventListener("dblclick", e => zoomAt(toSvg(e.clientX, e.clientY), 0.5));
  document.getElementById("zoom-in").addEventListener("click", () => zoomCentre(0.67));
  document.getElementById("zoom-out").addEventListener("click", () => zoomCentre(1.5));
  document.getElementById("zoom-reset").addEventListener("click", () => setView(Object.assign({}, home)));

  // ---------------------------------------------------------------- tooltip
  function fmt(n) { return typeof n === "number" ? n.toLocaleString("en-US") : (n === null || n === undefined ? "?" : String(n)); }
  function shapes(list) { return (list || []).map(t => t.type).join(", ") || "none"; }
  function tooltipRows(r) {
    const rect = r.x + "," + r.y + "  " + r.w + "×" + r.h + " PEs (" + fmt(r.w * r.h) + ")";
    const p = r.physical;
    const moved = p && (p.x !== r.x || p.y !== r.y || p.w !== r.w || p.h !== r.h);
    const perPe = typeof r.bytes_per_pe === "number"
      ? fmt(r.bytes_per_pe) + " B" + (data.usable_sram ? " (" + Math.round(100 * r.bytes_per_pe / data.usable_sram) + "% of a PE)" : "")
      : "?";
    const cycles = typeof r.cycles_per_token === "number"
      ? fmt(r.cycles_per_token) + " (" + Math.round(100 * r.cycles_per_token / data.slowest_cycles) + "% of the bottleneck)"
      : "?";
    const where = r.file ? r.file + ":" + r.line : (r.source || "?");
    return [
      ["op kind", (r.kind || "?") + (r.ops && r.ops.length ? "  (" + r.ops.join(", ") + ")" : "")],
      ["role", r.role || "?"], ["layer", r.layer === null || r.layer === undefined ? "none" : r.layer],
      ["wafer", r.wafer], ["region", rect + (moved ? "; physically " + p.x + "," + p.y + " " + p.w + "×" + p.h : "")],
      ["inputs", shapes(r.inputs)], ["outputs", shapes(r.outputs)], ["weights", shapes(r.params)],
      ["bytes per PE", perPe], ["FLOPs / token", fmt(r.flops_per_token)], ["cycles / pass", cycles],
      ["module", r.module || "?"], ["source", where],
    ];
  }
  function showTooltip(i, clientX, clientY) {
    const r = data.regions[i];
    tooltip.replaceChildren();
    const title = document.createElement("strong");
    title.textContent = r.kernel + (r.kernel === data.bottleneck ? "  (bottleneck)" : "");
    const list = document.createElement("dl");
    for (const [k, v] of tooltipRows(r)) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k; dd.textContent = String(v);
      list.append(dt, dd);
    }
    tooltip.append(title, list);
    tooltip.hidden = false;
    placeTooltip(clientX, clientY);
  }
  function placeTooltip(x, y) {
    const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    tooltip.style.left = Math.min(x + 16, window.innerWidth - w - 8) + "px";
    tooltip.style.top = (y + 16 + h > window.innerHeight ? Math.max(8, y - h - 12) : y + 16) + "px";
  }
  svg.addEventListener("pointerover", e => {
    const rect = e.target.closest("rect.region");
    if (rect && !drag) showTooltip(Number(rect.dataset.index), e.clientX, e.clientY);
  });
  svg.addEventListener("pointermove", e => { if (!tooltip.hidden) placeTooltip(e.clientX, e.clientY); });
  svg.addEventListener("pointerout", e => { if (e.target.closest("rect.region")) tooltip.hidden = true; });

  // ---------------------------------------------------------------- search
  const search = document.getElementById("search");
  const count = document.getElementById("match-count");
  let matches = [];
  function applySearch() {
    const q = search.value.trim().toLowerCase();
    matches = [];
    data.regions.forEach((r, i) => {
      const hit = q !== "" && r.kernel.toLowerCase().includes(q);
      if (hit) matches.push(i);
      regionAt(i).classList.toggle("match", hit);
    });
    labels.concat(halos).forEach(t => t.classList.toggle("match", matches.includes(Number(t.dataset.index))));
    svg.classList.toggle("searching", q !== "");
    rows.forEach(row => { row.hidden = q !== "" && !regionAt(Number(row.dataset.index)).classList.contains("match"); });
    count.textContent = q === "" ? "" : matches.length + " of " + data.regions.length + " kernels";
  }
  search.addEventListener("input", applySearch);
  search.addEventListener("keydown", e => {
    if (e.key !== "Enter" || matches.length === 0) return;
    const boxes = matches.map(i => regionAt(i).getBBox()).map((b, j) => {
      const m = regionAt(matches[j]).parentNode.transform.baseVal.consolidate().matrix;
      return { x: m.e + b.x * m.a, y: m.f + b.y * m.d, x2: m.e + (b.x + b.width) * m.a, y2: m.f + (b.y + b.height) * m.d };
    });
    const x = Math.min(...boxes.map(b => b.x)), y = Math.min(...boxes.map(b => b.y));
    zoomTo({ x: x, y: y, w: Math.max(...boxes.map(b => b.x2)) - x, h: Math.max(...boxes.map(b => b.y2)) - y });
  });

  // ---------------------------------------------------------------- colour modes
  const modeSelect = document.getElementById("color-by");
  modeSelect.addEventListener("change", () => {
    const mode = modeSelect.value;
    regions.forEach((rect, i) => rect.setAttribute("fill", data.fills[mode][i]));
    labels.forEach(t => t.setAttribute("fill", data.label_colors[mode][Number(t.dataset.index)]));
    halos.forEach(t => {  // a halo has its region's colour
      const fill = data.fills[mode][Number(t.dataset.index)];
      t.setAttribute("fill", fill);
      t.setAttribute("stroke", fill);
    });
    svg.querySelectorAll("g.legend").forEach(g => g.setAttribute("display", g.dataset.mode === mode ? "inline" : "none"));
  });

  // ---------------------------------------------------------------- kernel table
  rows.forEach(row => {
    const rect = regionAt(Number(row.dataset.index));
    row.addEventListener("mouseenter", () => rect.classList.add("hot"));
    row.addEventListener("mouseleave", () => rect.classList.remove("hot"));
  });
  const headers = Array.from(document.querySelectorAll("#kernel-table th"));
  headers.forEach((th, column) => th.addEventListener("click", () => {
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    headers.forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const numeric = th.classList.contains("num");
    const key = row => {
      const v = row.children[column].dataset.value;
      return numeric ? (v === "" ? -Infinity : Number(v)) : v;
    };
    const sorted = rows.slice().sort((a, b) => {
      const ka = key(a), kb = key(b);
      const order = ka < kb ? -1 : ka > kb ? 1 : Number(a.dataset.index) - Number(b.dataset.index);
      return ascending ? order : -order;
    });
    const body = document.querySelector("#kernel-table tbody");
    sorted.forEach(row => body.appendChild(row));
  }));
})();
"""
