// l2l dashboard: fills the pages from the JSON endpoints and keeps them current while a run is live.
// Everything from the store is put on the page as text (textContent, attributes), never parsed as HTML.
"use strict";

const body = document.body;
const POLL = Number(body.dataset.poll || 2000);
const IDLE_POLL = 10000; // a stopped run is still asked now and then: it may be resumed
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

async function getJSON(url) {
  let res;
  try {
    res = await fetch(url, { cache: "no-store" });
  } catch (err) { // the dashboard itself is gone (stopped, network): the page would go on showing old figures
    storeProblem(`The dashboard does not answer (${err.message}): it stopped (a search's --dashboard stops once the `
      + "search ends; `l2l dashboard` serves the store on its own) or cannot be reached. The figures below are the "
      + "last ones read; retrying.");
    throw err;
  }
  const data = await res.json().catch(() => ({}));
  // the store does not answer (503), or what the page shows is gone (404): say so, or a live run's page would keep
  // its old counts without a word
  const problem = data.error || res.statusText;
  storeProblem(res.ok ? null : res.status === 503 ? `${problem}: the figures below are the last ones read; retrying.` : problem);
  if (!res.ok) throw Object.assign(new Error(data.error || res.statusText), { status: res.status });
  return data;
}

function storeProblem(text) {
  const node = document.getElementById("store-problem");
  if (!node) return;
  node.hidden = !text;
  node.textContent = text || "";
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function fmt(x, digits = 4) {
  if (x === null || x === undefined) return "-";
  if (typeof x !== "number") return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(2) : x.toFixed(digits);
}

// a cost as the CLI writes it: whole numbers with thousands separators where whole or large (17,891 flops, not
// 17890.667), else 4 digits
function costFigure(x) {
  if (typeof x !== "number") return fmt(x);
  return Number.isInteger(x) || Math.abs(x) >= 100 ? x.toLocaleString("en-US", { maximumFractionDigits: 0 }) : fmt(x);
}

// seconds in a table column: always the same number of decimals, never an exponent (not "0.00" beside "1.96e-4")
function fixed(x, digits) {
  if (x === null || x === undefined) return "-";
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

// "1 evaluation", "3 evaluations"
function count(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function when(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") : "-";
}

// green while live or done, red when failed, amber when stopped otherwise (interrupted, stale)
function stateClass(run) {
  if (run.live) return "live";
  return ["done", "failed"].includes(run.state) ? run.state : "stopped";
}

function seconds(s) {
  if (s === null || s === undefined) return "-";
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// plotly reads a few tags in its labels; text from a run (its name) is drawn with those made harmless
function label(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const LAYOUT = {
  margin: { l: 55, r: 15, t: 10, b: 45 },
  height: 320,
  legend: { orientation: "h", y: -0.22 },
  font: { size: 12 },
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "#fbfbfd",
};

// ``text`` broken at spaces into lines of at most ``width`` characters (plotly's <br>)
function lines(text, width) {
  const out = [];
  for (const word of String(text).split(" ")) {
    const last = out.length ? out[out.length - 1] : null;
    if (last !== null && last.length + 1 + word.length <= width) out[out.length - 1] = `${last} ${word}`;
    else out.push(word);
  }
  return out.join("<br>");
}

function draw(id, traces, layout) {
  const node = document.getElementById(id);
  if (!node || !window.Plotly) return;
  const full = { ...LAYOUT, ...layout };
  for (const axis of ["xaxis", "yaxis", "yaxis2"]) full[axis] = { zeroline: false, ...(full[axis] || {}) };
  // a right-hand axis takes ticks of its own (synced to the left one's gridlines it read 1.0029, 0.944, ...)
  if (layout.yaxis2) full.yaxis2 = { tickmode: "auto", showgrid: false, ...full.yaxis2 };
  for (const axis of ["yaxis", "yaxis2"]) { // a long title runs past the chart's height: it takes two lines
    const title = full[axis].title;
    if (title && title.text) {
      full[axis] = { automargin: true, ...full[axis], title: { ...title, text: lines(title.text, 36) } };
    }
  }
  window.Plotly.react(node, traces, full, { displaylogo: false, responsive: true });
}

function schedule(fn, live) {
  setTimeout(fn, live ? POLL : IDLE_POLL);
}

// --- runs page ------------------------------------------------------------------------------------------

const query = new URLSearchParams(window.location.search);
const listPage = Number(query.get("page") || 1); // the page of the run list shown (newest first)
// the runs compared: those the address names, on this page of the list or another, then ticked or unticked here
const compared = new Set((query.get("compare") || "").split(",").map((p) => p.trim()).filter((p) => /^[0-9]+$/.test(p)));

function toggleCompare(event) {
  if (event.target.checked) compared.add(event.target.value);
  else compared.delete(event.target.value);
  drawCompare();
}

// a run's best as `l2l runs best` gives it: the estimated mean ± its 95% half-width where it has one
function bestText(r) {
  const pm = r.best_pm === null || r.best_pm === undefined ? "" : ` ± ${r.best_pm.toFixed(4)}`;
  return `${fmt(r.best)}${pm}${r.best_shared ? " shared" : ""}`; // scored with shared weights, as `runs list` says
}

function runRow(r, picked) {
  const tr = el("tr", null, { "data-run": r.id });
  const box = el("input", null, { type: "checkbox", class: "pick", value: r.id, "aria-label": `compare run ${r.id}` });
  box.checked = picked.has(String(r.id));
  box.addEventListener("change", toggleCompare);
  const cells = [box, el("a", r.id, { href: `/runs/${r.id}` }), r.name || "", r.space, r.strategy,
    // a weight-sharing run: architectures scored with the shared weights, of those its epochs score
    // the state's first words (stale, running...): the why and how to resume are its tooltip and on the run's page
    el("span", r.state.split(" (")[0], { class: `state ${stateClass(r)}`, title: r.state }),
    r.weight_sharing ? r.scored : r.done, r.failed, r.planned,
    bestText(r), when(r.created_at), seconds(r.duration_s)];
  cells.forEach((c, i) => {
    const td = el("td", c instanceof Node ? null : c);
    if (c instanceof Node) td.appendChild(c);
    if (i >= 6 && i !== 10) td.className = "num";
    tr.appendChild(td);
  });
  return tr;
}

async function refreshRuns() {
  let live = true;
  try {
    const data = await getJSON(`/api/runs?page=${listPage}`);
    const tbody = document.querySelector("#runs tbody");
    if (data.runs.length) tbody.replaceChildren(...data.runs.map((r) => runRow(r, compared)));
    live = data.runs.some((r) => r.live);
    if (compared.size) await drawCompare();
  } catch (err) {
    // said at the top of the page (getJSON); the next poll tries again
  } finally {
    schedule(refreshRuns, live);
  }
}

// the runs the comparison was asked for that the store does not hold (deleted, or never there)
function sayMissing(gone) {
  let line = document.getElementById("compare-missing");
  if (!line && gone.length) {
    line = document.createElement("p");
    line.id = "compare-missing";
    line.className = "problem";
    document.getElementById("compare-hint").before(line);
  }
  if (!line) return;
  line.hidden = !gone.length;
  const them = gone.length === 1 ? "it" : "them";
  line.textContent = gone.length
    ? `No run${gone.length > 1 ? "s" : ""} ${gone.join(", ")} in this store: the comparison leaves ${them} out.` : "";
}

async function drawCompare() {
  const ids = [...compared].sort((a, b) => a - b);
  const hint = document.getElementById("compare-hint");
  // the address names the runs compared (and the page of the list): reloaded or shared, the page draws the same
  const params = [...(listPage > 1 ? [`page=${listPage}`] : []), ...(ids.length ? [`compare=${ids.join(",")}`] : [])];
  history.replaceState(null, "", params.length ? `/?${params.join("&")}` : "/");
  document.querySelectorAll("#runs-pager a[data-page]").forEach((a) => { // another page compares the same runs
    a.setAttribute("href", `/?page=${a.dataset.page}${ids.length ? `&compare=${ids.join(",")}` : ""}`);
  });
  const notes = document.getElementById("compare-notes");
  if (!ids.length) {
    notes.hidden = true;
    sayMissing([]);
    hint.hidden = false;
    window.Plotly && window.Plotly.purge(document.getElementById("chart-compare"));
    return;
  }
  hint.hidden = true;
  const data = await getJSON(`/api/compare?runs=${ids.join(",")}`);
  sayMissing(data.missing); // a run deleted while the page was open: named, as on a fresh load
  notes.hidden = !data.notes.length; // a run with no line (no child finished) is named, not silently left out
  notes.textContent = data.notes.map((n) => `${n[0].toUpperCase()}${n.slice(1)}.`).join(" ");
  const names = {};
  document.querySelectorAll("#runs tbody tr").forEach((tr) => {
    names[tr.dataset.run] = tr.children[2] ? tr.children[2].textContent : "";
  });
  const traces = data.runs.map((r, i) => ({
    x: r.x, y: r.y, mode: "lines", line: { shape: "hv", color: COLOURS[i % COLOURS.length] },
    name: label(`run ${r.id}${names[r.id] ? " " + names[r.id] : ""}${r.shared ? " (shared-weight scores)" : r.mean ? " (best estimated mean)" : ""}`),
  }));
  const shared = data.runs.some((r) => r.shared);
  const x = shared ? "child (weight sharing: architecture scored)" : "child";
  // a legend even for one run (plotly hides a lone trace's): the chart says which run it draws
  draw("chart-compare", traces, { xaxis: { title: { text: x } }, yaxis: { title: { text: "best reward so far" } },
    showlegend: true });
}

// --- run page -------------------------------------------------------------------------------------------

// the children table's page, sort and filter: from the page's address (the server put them on the body and the
// filter's fields), and kept there, so a reload or a shared link shows the same rows
const table = { page: Number(body.dataset.tablePage || 1), per: 25, sort: body.dataset.sort || "number",
  order: body.dataset.order || "asc", total: 0 };
let lastKey = null;
let lastBest = null; // what the best architecture's line was drawn from
let bestRules = false; // whether it shows an optimizer search's best rules

function setText(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

async function refreshRun(runId) {
  let live = true;
  try {
    const s = await getJSON(`/api/runs/${runId}`);
    live = s.live;
    setText("n-done", s.weight_sharing ? s.scored : s.done);
    setText("n-total", s.planned);
    setText("n-derive", s.derive_note);
    // each status the list may be filtered by, with its children now (a derived architecture comes at the end)
    document.querySelectorAll("#status-filter option[value]:not([value=''])").forEach((o) => {
      o.textContent = `${o.value} (${s.counts[o.value] || 0})`;
    });
    setText("n-failed", s.failed);
    setText("n-running", `${s.running} / ${s.queued}`);
    setText("in-flight", s.in_flight);
    setText("best-reward", fmt(s.best));
    setText("best-pm", s.best_pm === null || s.best_pm === undefined ? "" : ` ± ${s.best_pm.toFixed(4)}`);
    setText("best-label", s.best_label);
    setText("n-updates", s.updates);
    setText("duration", seconds(s.duration_s));
    const best = document.getElementById("best-child");
    best.textContent = s.best_child === null ? "-" : s.best_child;
    best.setAttribute("href", s.best_child === null ? "#" : `/runs/${runId}/children/${s.best_child}`);
    const state = document.getElementById("state");
    state.textContent = s.state;
    state.className = `state ${stateClass(s)}`;
    setText("stopped-note", s.stopped_note);
    const key = [s.done, s.failed, s.running, s.queued, s.updates, s.epochs, s.state].join("|");
    // the best line is drawn again whenever what it shows changes: its child, but also the estimate and the
    // evaluations behind it (more of the same architecture), and any other best_* figure the summary gives; the
    // best rules of an optimizer search change with the children done
    const bestKey = JSON.stringify([Object.entries(s).filter(([k]) => k.startsWith("best")), bestRules ? s.done : null]);
    const jobs = [];
    if (key !== lastKey) { // drawn again at the next poll unless every part of it was read
      const parts = [refreshProgress(runId), refreshTable(runId), refreshPareto(runId)];
      if (s.weight_sharing) parts.push(refreshEpochs(runId));
      jobs.push(Promise.all(parts).then(() => { lastKey = key; }));
    }
    if (bestKey !== lastBest) jobs.push(refreshBest(runId).then(() => { lastBest = bestKey; }));
    await Promise.all(jobs);
  } catch (err) {
    // said at the top of the page (getJSON); the next poll tries again. A run no longer in the store (`l2l runs
    // delete`) is not "done" any more: its state says so, and the figures below are what it was
    if (err.status === 404 && err.message.startsWith(`no run ${runId} `)) {
      const state = document.getElementById("state");
      state.textContent = "deleted";
      state.className = "state failed";
      setText("stopped-note", "no longer in the store: what this page shows is what it was");
      live = false;
    }
  } finally {
    schedule(() => refreshRun(runId), live);
  }
}

async function refreshProgress(runId) {
  const p = await getJSON(`/api/runs/${runId}/progress`);
  const traces = [
    { x: p.children.x, y: p.children.y, mode: "markers", name: "child reward",
      marker: { size: 5, opacity: 0.55, color: COLOURS[0] } },
    { x: p.best.x, y: p.best.y, mode: "lines", name: p.best.label || "best so far", line: { shape: "hv", color: "#111" } },
  ];
  if (p.batch_mean.x.length) {
    traces.push({ x: p.batch_mean.x, y: p.batch_mean.y, mode: "lines", name: p.batch_mean.label || "mean of each update's children",
      line: { color: COLOURS[1], width: 1.5 } });
  }
  if (p.failed.x.length) {
    // a failed child has no reward: it is drawn at the lowest one (at 0 when none succeeded), and says so
    traces.push({ x: p.failed.x, y: p.failed.y, mode: "markers",
      name: p.children.x.length ? "failed (drawn at the lowest reward)" : "failed (no reward; drawn at 0)",
      marker: { symbol: "x", color: COLOURS[3], size: 6 } });
  }
  const numbers = [...p.children.x, ...p.failed.x];
  draw("chart-progress", traces, {
    // an update's mean sits where it was made: after the newest child it learned from, as `l2l plot progress` says
    xaxis: { title: { text: p.batch_mean.of_updates && p.batch_mean.x.length
      ? "child (an update's mean: after its newest child)" : "child" }, ...wholeAxis(numbers) },
    yaxis: { title: { text: p.reward_label } },
    showlegend: true, // with one trace drawn plotly would hide it: a failed child's cross must say what it is
  });
  const nothing = !p.children.x.length; // an empty chart said nothing: say what it waits for
  const sliced = p.children.shown < p.children.of
    ? `${p.children.of} finished children: each of ${p.children.shown / 2} slices shows its lowest and highest reward` : "";
  // the derived architecture is scored on the whole validation split, these points on one batch: it can be lower
  const shared = p.shared && !nothing ? "Each point: an architecture's shared-weight score on one validation batch "
    + "while searching; the derived architecture is scored on the whole validation split, so its figure above can be "
    + "below this line's best." : "";
  setText("progress-note", nothing && !p.failed.x.length ? "No child has finished yet." : [sliced, shared].filter(Boolean).join(" "));
  drawUpdates(p.updates);
  const h = p.histogram;
  document.getElementById("chart-hist").hidden = nothing;
  setText("hist-note", nothing ? (p.failed.x.length ? "Every finished child failed: no reward to count." : "No child has finished yet.") : "");
  if (nothing) return;
  draw("chart-hist", [{ type: "bar", x: h.edges.map((e) => e + h.width[0] / 2), y: h.counts,
    width: h.width[0] * 0.95, marker: { color: COLOURS[0] }, name: "children" }],
  { xaxis: { title: { text: "reward" } }, yaxis: { title: { text: "children" }, ...wholeAxis([0, ...h.counts]) },
    showlegend: false });
}

// entropy on the left, loss on the right; a series the strategy does not report (null: every value 0, as for
// TPE, evolution and random search's loss) is no line at 0, and the note under the chart says why
function drawUpdates(u) {
  const mode = u.x.length > 1 ? "lines" : "markers"; // one update: a line of one point draws nothing
  const both = u.entropy !== null && u.loss !== null;
  const traces = [];
  if (u.entropy !== null) {
    traces.push({ x: u.x, y: u.entropy, mode, name: "entropy", line: { color: COLOURS[2] }, marker: { color: COLOURS[2] } });
  }
  if (u.loss !== null) {
    traces.push({ x: u.x, y: u.loss, mode, name: "loss", yaxis: both ? "y2" : "y", line: { color: COLOURS[4] },
      marker: { color: COLOURS[4] } });
  }
  setText("updates-note", u.note || (u.of ? "" : "No controller update yet."));
  const chart = document.getElementById("chart-updates");
  chart.hidden = u.of > 0 && !traces.length;
  if (chart.hidden) return;
  draw("chart-updates", traces, {
    xaxis: { title: { text: "controller update" }, ...wholeAxis(u.x) },
    yaxis: { title: { text: u.entropy !== null || !u.of ? "entropy" : "loss" } },
    ...(both || !u.of ? { yaxis2: { title: { text: "loss" }, overlaying: "y", side: "right" }, margin: { ...LAYOUT.margin, r: 55 } } : {}),
  });
}

async function refreshPareto(runId) {
  const select = document.getElementById("cost");
  const p = await getJSON(`/api/runs/${runId}/pareto${select.value ? `?cost=${encodeURIComponent(select.value)}` : ""}`);
  select.hidden = !p.cost;
  document.getElementById("chart-pareto").hidden = !p.cost;
  if (!p.cost) {
    setText("pareto-note", "No finished child reports a cost (FLOPs, parameters, time) in this run.");
    return;
  }
  if (select.options.length !== p.keys.length) {
    select.replaceChildren(...p.keys.map((k) => el("option", k, { value: k })));
  }
  select.value = p.cost;
  const lo = Math.min(...p.points.x);
  const log = p.points.x.length && lo > 0 && Math.max(...p.points.x) / lo > 100;
  draw("chart-pareto", [
    { x: p.points.x, y: p.points.y, customdata: p.points.child, mode: "markers",
      name: "children", marker: { size: 5, opacity: 0.5, color: COLOURS[0] },
      hovertemplate: "child %{customdata}<br>%{x}, %{y}<extra></extra>" },
    { x: p.front.x, y: p.front.y, customdata: p.front.child, mode: "lines+markers", name: "Pareto front",
      line: { shape: "hv", color: COLOURS[3] }, hovertemplate: "child %{customdata}<br>%{x}, %{y}<extra></extra>" },
  ], { xaxis: { title: { text: p.cost }, type: log ? "log" : "linear" }, yaxis: { title: { text: p.axis } } });
  setText("pareto-what", p.axis.startsWith("validation") ? "Accuracy" : "Reward");
  setText("pareto-note", p.points.x.length < p.of ? `${p.points.x.length} of ${count(p.of, "child", "children")} shown; the front in full` : "");
}

async function refreshBest(runId) {
  const b = await getJSON(`/api/runs/${runId}/best`);
  const img = document.getElementById("best-arch");
  setText("best-problem", b.problem || "");
  if (!b.child) {
    setText("best-describe", b.failed ? `Every finished child failed (${count(b.failed, "child", "children")}): their errors are in the table below.` : "No child has finished yet.");
    return;
  }
  const link = el("a", `child ${b.child.number}`, { href: `/runs/${runId}/children/${b.child.number}` });
  const line = document.getElementById("best-describe");
  const derived = b.child.status === "derived" ? " (derived)" : b.child.role ? ` (${b.child.role})` : "";
  const pm = b.child.pm === null || b.child.pm === undefined ? "" : ` ± ${b.child.pm.toFixed(4)} (95%)`;
  const once = b.child.once === undefined ? "" : `, estimated ${fmt(b.child.once)} (evaluated once)`;
  const named = b.child.evaluations
    ? `, estimated mean ${fmt(b.child.estimate)}${pm} over ${count(b.child.evaluations, "evaluation", "evaluations")} (this child's reward ${fmt(b.child.reward)})`
    : `, reward ${fmt(b.child.reward)}${once}`;
  line.replaceChildren(link, document.createTextNode(`${derived}${named}: ${b.child.describe || ""}`));
  bestRules = b.rules.length > 0;
  img.hidden = b.rules.length > 0; // an update rule is drawn as its formula below, not as a chain of tokens
  if (!b.rules.length) img.src = b.child.arch;
  document.querySelector("#best-section h2").textContent = b.rules.length ? "Best child" : "Best architecture";
  document.getElementById("rules-section").hidden = !b.rules.length;
  document.getElementById("rules").replaceChildren(...b.rules.map((r, i) => ruleCard(runId, r, i)));
  b.rules.forEach((r, i) => drawRule(r, i));
}

function ruleCard(runId, r, i) {
  const card = el("div", null, { class: "rule" });
  const head = el("h3");
  head.append(`#${i + 1} `, el("a", `child ${r.child}`, { href: `/runs/${runId}/children/${r.child}` }),
    `: reward ${fmt(r.reward)}${r.best_lr ? `, best lr ${r.best_lr}` : ""}${r.test_acc ? `, test acc ${fmt(r.test_acc)}` : ""}`);
  const formula = el("img", null, { class: "formula", src: r.formula_svg, alt: r.formula });
  const text = el("p", r.rule, { class: "hint" });
  const charts = el("div", null, { class: "pair" });
  charts.append(el("div", null, { id: `heat-${i}`, class: "chart small" }), el("div", null, { id: `curve-${i}`, class: "chart small" }));
  card.append(head, formula, text, charts);
  return card;
}

function drawRule(r, i) {
  const h = r.heatmap;
  // a chart of one colour reads as a drawing that failed: it says what it shows, as `l2l plot optimizer` does
  const note = h.note ? [{ text: h.note.replaceAll("\n", "<br>"), xref: "paper", yref: "paper", x: 0.5, y: 0.5,
    showarrow: false, bgcolor: "rgba(255,255,255,0.85)", font: { size: 11 } }] : [];
  draw(`heat-${i}`, [{ type: "heatmap", x: h.g, y: h.m, z: h.z, zmin: -h.bound, zmax: h.bound, colorscale: "RdBu", colorbar: { thickness: 12 } }],
  { xaxis: { title: { text: "gradient g" } }, yaxis: { title: { text: "momentum m" } }, height: 300, annotations: note });
  const single = oneEpoch(r.curves);
  if (single) document.getElementById(`curve-${i}`).replaceChildren(el("p", single, { class: "hint" }));
  else draw(`curve-${i}`, ...curveTraces(r.curves, "epoch (at the best learning rate)"));
}

// what curves of one epoch say ("After its one epoch: train_loss 0.5213, val_acc 0.8100."), or "" when some
// curve has more points (a chart shows those)
function oneEpoch(curves) {
  const entries = Object.entries(curves || {}).filter(([, ys]) => Array.isArray(ys) && ys.length);
  if (!entries.length || entries.some(([, ys]) => ys.length > 1)) return "";
  return `After its one epoch: ${entries.map(([name, ys]) => `${name} ${fmt(ys[0])}`).join(", ")}.`;
}

// a child's curves: losses on the left axis, accuracies (names with "acc") on the right
function curveTraces(curves, xTitle) {
  const entries = Object.entries(curves || {}).filter(([, ys]) => Array.isArray(ys) && ys.length);
  const traces = entries.map(([name, ys], k) => ({
    x: ys.map((_, e) => e + 1), y: ys, mode: "lines+markers", name, yaxis: name.includes("acc") ? "y2" : "y",
    line: { color: COLOURS[k % COLOURS.length], dash: name.includes("acc") ? "dot" : "solid" },
  }));
  const longest = Math.max(0, ...entries.map(([, ys]) => ys.length));
  return [traces, {
    xaxis: { title: { text: xTitle }, ...wholeAxis([1, longest]) }, height: 300,
    yaxis: { title: { text: "loss" } },
    yaxis2: { title: { text: "accuracy" }, overlaying: "y", side: "right" }, margin: { ...LAYOUT.margin, r: 55 },
  }];
}

// an axis of whole numbers (children, updates, counts): ticks one apart when the values span 20 or less, so
// plotly's fractional ticks do not print "1 1 1 2 2 2"
function wholeAxis(values) {
  const span = values.length ? Math.max(...values) - Math.min(0, ...values) : 0;
  return { tickformat: "d", ...(span <= 20 ? { dtick: 1 } : {}) };
}

async function refreshEpochs(runId) {
  const { epochs } = await getJSON(`/api/runs/${runId}/epochs`);
  const x = epochs.map((e) => e.epoch + 1); // stored from 0; the progress bar and `l2l runs show` count from 1
  draw("chart-epochs", [
    { x, y: epochs.map((e) => e.train_loss), mode: "lines+markers", name: "shared weights' loss" },
    { x, y: epochs.map((e) => e.mean_reward), mode: "lines+markers", name: "mean reward", yaxis: "y2" },
  ], {
    xaxis: { title: { text: "epoch" }, ...wholeAxis(x) },
    yaxis: { title: { text: "loss" } }, yaxis2: { title: { text: "mean reward" }, overlaying: "y", side: "right" },
    margin: { ...LAYOUT.margin, r: 60 },
  });
  document.querySelector("#epochs tbody").replaceChildren(...epochs.map((e) => {
    const tr = el("tr");
    [e.epoch + 1, fmt(e.train_loss), e.train_steps, fmt(e.mean_reward), fmt(e.entropy), e.updates, fixed(e.wall_time, 1)]
      .forEach((v) => tr.appendChild(el("td", v, { class: "num" })));
    return tr;
  }));
}

let tableRequest = 0; // the latest children-table request: an older answer arriving after it is dropped

async function refreshTable(runId) {
  const mine = ++tableRequest;
  const status = document.getElementById("status-filter").value;
  const text = document.getElementById("text-filter").value;
  const q = new URLSearchParams({ page: table.page, per: table.per, sort: table.sort, order: table.order });
  if (status) q.set("status", status);
  if (text) q.set("q", text);
  const shown = new URLSearchParams(); // the address: what differs from the defaults
  if (status) shown.set("status", status);
  if (text) shown.set("q", text);
  if (table.sort !== "number" || table.order !== "asc") { shown.set("sort", table.sort); shown.set("order", table.order); }
  if (table.page > 1) shown.set("page", table.page);
  const address = `${window.location.pathname}${shown.toString() ? `?${shown}` : ""}`;
  if (address !== `${window.location.pathname}${window.location.search}`) {
    // a new filter, sort or page is a step Back returns from; typing in the text filter replaces its own step
    const was = new URLSearchParams(window.location.search);
    const typed = was.get("q") !== shown.get("q") && [...shown.keys(), ...was.keys()].every(
      (k) => k === "q" || was.get(k) === shown.get(k));
    history[typed && was.has("q") ? "replaceState" : "pushState"](null, "", address);
  }
  const data = await getJSON(`/api/runs/${runId}/children?${q}`);
  if (mine !== tableRequest) return; // a filter, sort or page sent since: its answer is the one to show
  table.total = data.total;
  const last = Math.max(1, Math.ceil(data.total / table.per));
  if (table.page > last) { // a page past the end (an old link, a filter narrowed): its last page
    table.page = last;
    return refreshTable(runId);
  }
  const empty = document.getElementById("children-empty"); // an empty table said nothing: say why
  empty.hidden = data.total > 0;
  empty.textContent = status || text ? "No child matches this filter." : "No child yet.";
  const rows = data.rows.map((c) => {
    const tr = el("tr", null, { class: c.status });
    const cost = Object.entries(c.cost).slice(0, 2).map(([k, v]) => `${k} ${costFigure(v)}`).join(", ");
    const cells = [el("a", c.number, { href: `/runs/${runId}/children/${c.number}` }), c.status, fmt(c.reward),
      fmt(c.val_acc), fmt(c.val_loss), cost, c.worker || "-", c.device || "-", when(c.started_at),
      fixed(c.wall_time, 2), c.error || ""];
    cells.forEach((v, i) => {
      const td = el("td", v instanceof Node ? null : v);
      if (v instanceof Node) td.appendChild(v);
      if ([0, 2, 3, 4, 9].includes(i)) td.className = "num";
      if (i === 10) td.className = "err";
      tr.appendChild(td);
    });
    return tr;
  });
  document.querySelector("#children tbody").replaceChildren(...rows);
  const pages = Math.max(1, Math.ceil(data.total / table.per));
  setText("page-info", `${count(data.total, "child", "children")} · page ${table.page} of ${pages}`);
  document.getElementById("prev").disabled = table.page <= 1;
  document.getElementById("next").disabled = table.page >= pages;
  document.querySelectorAll("#children th[data-sort]").forEach((th) => {
    th.classList.toggle("sorted", th.dataset.sort === table.sort);
    th.classList.toggle("desc", th.dataset.sort === table.sort && table.order === "desc");
  });
}

function initRun() {
  const runId = body.dataset.run;
  const again = () => refreshTable(runId);
  document.querySelectorAll("#children th[data-sort]").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.sort;
    table.order = table.sort === key && table.order === "desc" ? "asc" : key === table.sort ? "desc" : "desc";
    if (key === "number" && table.sort !== key) table.order = "asc";
    table.sort = key;
    table.page = 1;
    again();
  }));
  document.getElementById("prev").addEventListener("click", () => { table.page -= 1; again(); });
  document.getElementById("next").addEventListener("click", () => { table.page += 1; again(); });
  document.getElementById("status-filter").addEventListener("change", () => { table.page = 1; again(); });
  let typing = null;
  document.getElementById("text-filter").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { table.page = 1; again(); }, 300);
  });
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
  window.addEventListener("popstate", () => { // Back or Forward: the table as that address had it
    const at = new URLSearchParams(window.location.search);
    document.getElementById("status-filter").value = at.get("status") || "";
    document.getElementById("text-filter").value = at.get("q") || "";
    table.sort = at.get("sort") || "number";
    table.order = at.get("order") || "asc";
    table.page = Number(at.get("page") || 1);
    again();
  });
  document.getElementById("cost").addEventListener("change", () => refreshPareto(runId));
  document.getElementById("best-arch").addEventListener("error", (e) => { e.target.hidden = true; });
  refreshRun(runId);
}

// --- child page -----------------------------------------------------------------------------------------

async function refreshChild(runId, number) {
  let c;
  try {
    c = await getJSON(`/api/runs/${runId}/children/${number}`);
  } catch (err) { // said at the top of the page (getJSON); asked again
    setTimeout(() => refreshChild(runId, number), IDLE_POLL);
    return;
  }
  const status = document.getElementById("child-status");
  const changed = status.textContent !== c.status;
  status.textContent = c.status;
  status.className = `state ${c.status}`;
  setText("child-reward", fmt(c.reward));
  const [traces, layout] = curveTraces(c.curves, "epoch");
  const single = oneEpoch(c.curves); // one point a curve: two axes of lone markers would overlap, so said in words
  document.getElementById("chart-curves").hidden = !traces.length || Boolean(single);
  if (traces.length && !single) draw("chart-curves", traces, layout);
  setText("curves-note", single || (traces.length ? "" : "This child recorded no curves."));
  if (changed && ["done", "failed"].includes(c.status)) window.location.reload(); // it finished: show all of it
  if (["queued", "running"].includes(c.status)) setTimeout(() => refreshChild(runId, number), POLL);
}

function initChild() {
  const arch = document.getElementById("arch");
  if (arch) arch.addEventListener("error", () => arch.closest("section").remove());
  refreshChild(body.dataset.run, body.dataset.child);
}

const page = body.dataset.page;
if (page === "runs") {
  document.querySelectorAll(".pick").forEach((b) => b.addEventListener("change", toggleCompare));
  refreshRuns();
} else if (page === "run") {
  initRun();
} else if (page === "child") {
  initChild();
}
