// topo's web UI: reads the JSON API (/api/v1) every second and draws the topology.
"use strict";

const REFRESH_MS = 1000;
const state = { id: decodeURIComponent(location.hash.slice(1)) || null, window: "1m", actions: false };

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function num(x) {
  if (x === null || x === undefined) return "–";
  const a = Math.abs(x);
  if (a >= 1e9) return (x / 1e9).toFixed(2) + "G";
  if (a >= 1e6) return (x / 1e6).toFixed(2) + "M";
  if (a >= 1e4) return (x / 1e3).toFixed(1) + "k";
  if (Number.isInteger(x)) return String(x);
  return x.toFixed(a < 10 ? 1 : 0);
}
const ms = (x) => (x === null || x === undefined ? "–" : x < 1 ? x.toFixed(3) : x.toFixed(1));
const cap = (x) => (x === null || x === undefined ? "–" : x.toFixed(3));
const bytes = (b) => (b === null || b === undefined ? "–" : b >= 1 << 30 ? (b / (1 << 30)).toFixed(2) + " GiB" : (b / (1 << 20)).toFixed(1) + " MiB");
const secs = (s) => {
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
};
// Storm UI's colouring: green when idle, red at capacity 1.
const capColour = (c) => (c === null || c === undefined ? "hsl(220,12%,55%)" : `hsl(${Math.round(120 * (1 - Math.min(1, Math.max(0, c))))},65%,42%)`);

function table(el, head, rows) {
  const th = head.map((h) => `<th class="${h.startsWith("<") ? "l" : ""}">${h.replace(/^</, "")}</th>`).join("");
  const body = rows.length ? rows.map((r) => "<tr>" + r.map((c, i) => `<td class="${head[i].startsWith("<") ? "l" : ""}">${c}</td>`).join("") + "</tr>").join("")
    : `<tr><td class="l muted" colspan="${head.length}">none</td></tr>`;
  el.innerHTML = `<thead><tr>${th}</tr></thead><tbody>${body}</tbody>`;
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function drawNav(list) {
  $("#topologies").innerHTML = list.topologies.map((t) =>
    `<a href="#${encodeURIComponent(t.id)}" class="${t.id === state.id ? "current" : ""}">${esc(t.name)}</a>`).join("");
}

// The last committed checkpoint (its duration and size) and the failed ones.
function checkpointStat(k) {
  const last = k.last_completed == null ? "none"
    : `#${k.last_completed} · ${k.last_duration_ms == null ? "" : `${ms(k.last_duration_ms)} ms · `}${num(k.size_bytes)} B`;
  return `<span class="stat"><span class="muted">checkpoint</span><b id="checkpoint">${esc(last)}</b></span>
    <span class="stat"><span class="muted">failed checkpoints</span><b>${num(k.failed)}</b></span>`;
}

function drawSummary(d) {
  const b = d;
  $("#summary").innerHTML = `
    <span class="stat"><span class="muted">topology</span><b>${esc(b.name)}</b></span>
    <span class="stat"><span class="muted">status</span><b class="status-${esc(b.status)}">${esc(b.status)}</b></span>
    <span class="stat"><span class="muted">uptime</span><b>${secs(b.uptime_secs)}</b></span>
    <span class="stat"><span class="muted">workers</span><b>${b.workers_running}</b></span>
    <span class="stat"><span class="muted">tasks</span><b>${b.tasks}</b></span>
    <span class="stat"><span class="muted">emitted/s</span><b id="emitted-rate">${num(b.emitted_per_sec)}</b></span>
    <span class="stat"><span class="muted">acked/s</span><b>${num(b.acked_per_sec)}</b></span>
    <span class="stat"><span class="muted">failed/s</span><b>${num(b.failed_per_sec)}</b></span>
    <span class="stat"><span class="muted">pending</span><b>${num(b.pending)}</b></span>
    ${b.checkpoints ? checkpointStat(b.checkpoints) : ""}
    ${d.error ? `<p class="bp">${esc(d.error)}</p>` : ""}`;
}

// The DAG, layered left to right: a column per layer (longest path from a spout), edges
// as curves labelled with their rate, components coloured by capacity.
function drawDag(graph) {
  const W = 176, H = 50, GX = 110, GY = 26, PAD = 20;
  const layers = new Map();
  for (const n of graph.nodes) {
    if (!layers.has(n.layer)) layers.set(n.layer, []);
    layers.get(n.layer).push(n);
  }
  const rows = Math.max(1, ...[...layers.values()].map((l) => l.length));
  const height = PAD * 2 + rows * H + (rows - 1) * GY;
  const cols = Math.max(1, ...[...layers.keys()].map((k) => k + 1));
  const width = PAD * 2 + cols * W + (cols - 1) * GX;
  const pos = new Map();
  for (const [layer, nodes] of layers) {
    const span = nodes.length * H + (nodes.length - 1) * GY;
    nodes.forEach((n, i) => pos.set(n.id, { x: PAD + layer * (W + GX), y: (height - span) / 2 + i * (H + GY) }));
  }
  let edges = "", labels = "";
  for (const e of graph.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const dx = Math.max(40, (x2 - x1) / 2);
    edges += `<path class="edge" marker-end="url(#arrow)" d="M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2 - 4},${y2}"><title>${esc(e.from)} → ${esc(e.to)} (${esc(e.stream)}, ${esc(e.grouping)})</title></path>`;
    const mx = (x1 + x2) / 2, my = (y1 + y2) / 2 - 6;
    labels += `<text class="edge-rate" data-edge="${esc(e.from)}->${esc(e.to)}" x="${mx}" y="${my}" text-anchor="middle">${num(e.per_sec)}/s${e.exact ? "" : " ≈"}</text>`;
  }
  const nodes = graph.nodes.map((n) => {
    const p = pos.get(n.id);
    return `<g class="node" data-id="${esc(n.id)}" transform="translate(${p.x},${p.y})">
      <rect width="${W}" height="${H}" rx="7" fill="${capColour(n.capacity)}"></rect>
      <text x="12" y="21">${esc(n.id)}</text>
      <text class="sub" x="12" y="38">${esc(n.kind)} ×${n.parallelism} · capacity ${cap(n.capacity)}</text>
      <title>${esc(n.id)}: ${esc(n.type)}, capacity ${cap(n.capacity)}</title></g>`;
  }).join("");
  $("#dag").innerHTML = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" style="max-height:${height}px" role="img" aria-label="topology graph">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#8d96a8"></path></marker></defs>
    ${edges}${nodes}${labels}</svg>`;
}

function drawWindows(d) {
  $("#windows").innerHTML = d.windows.map((w) =>
    `<button data-window="${esc(w.window)}" class="${w.window === state.window ? "current" : ""}">${w.window === "all" ? "whole run" : esc(w.window)}</button>`).join(" ");
  const w = d.windows.find((x) => x.window === state.window) || d.windows[0];
  if (!w) return;
  const per = (x) => num(x / Math.max(w.secs, 1e-3));
  table($("#components"), ["<component", "<kind", "emitted", "transferred", "executed", "acked", "failed", "emitted/s", "executed/s", "capacity", "execute p99 ms", "complete p99 ms"],
    w.rows.map((r) => [esc(r.id), esc(r.kind), num(r.totals.emitted), num(r.totals.transferred), num(r.totals.executed), num(r.totals.acked), num(r.totals.failed),
      per(r.totals.emitted), per(r.totals.executed), cap(r.capacity), ms(r.execute_p99_ms), ms(r.complete_p99_ms)]));
}

function drawLive(d) {
  table($("#live"), ["<component", "<kind", "tasks", "emitted/s", "executed/s", "acked/s", "failed/s", "explicit", "timeout", "panic", "worker lost", "capacity", "execute p99 ms", "complete p99 ms", "queue", "pending"],
    d.components.map((c) => [esc(c.id), esc(c.kind), c.tasks.length, num(c.rates.emitted), num(c.rates.executed), num(c.rates.acked), num(c.rates.failed),
      num(c.failed_by.explicit), num(c.failed_by.timeout), num(c.failed_by.panic), num(c.failed_by.worker_lost),
      c.capacity !== null && c.capacity > 0.9 ? `<span class="bp">${cap(c.capacity)}</span>` : cap(c.capacity),
      ms(c.execute_p99_ms), ms(c.complete_p99_ms), num(c.queue_depth), num(c.pending)]));
}

function drawWorkers(d) {
  table($("#workers-table"), ["worker", "<host", "pid", "RSS", "CPU %", "restarts", "<state", "uptime", "tasks"],
    d.workers.map((w) => [w.worker, esc(w.host ?? "–"), w.pid ?? "–", bytes(w.rss_bytes), w.cpu_percent === null ? "–" : w.cpu_percent.toFixed(0),
      w.restarts, w.running ? "running" : "ended", secs(w.uptime_secs), w.tasks.length]));
  table($("#failures"), ["<component", "<reason", "count", "<samples (message id or tree)"],
    d.failures.map((f) => [esc(f.component), esc(f.reason), num(f.count),
      esc(f.samples.map((s) => (s.msg_id !== null ? s.msg_id : s.root) + ` (task ${s.task})`).join(", "))]));
  const byWorker = new Map();
  for (const p of d.plan) {
    if (!byWorker.has(p.worker)) byWorker.set(p.worker, []);
    byWorker.get(p.worker).push(`${esc(p.component)}:${p.task}`);
  }
  table($("#plan"), ["worker", "<tasks (component:task)"], [...byWorker].map(([w, ts]) => [w, ts.join(" ")]));
}

async function act(name) {
  if (!state.id) return;
  const token = $("#token").value.trim();
  sessionStorage.setItem("topo-ui-token", token);
  let q = "";
  if (name === "rebalance") {
    const args = [["workers", $("#workers").value.trim()], ["parallelism", $("#parallelism").value.trim()]];
    q = "?" + args.filter(([, v]) => v).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
  }
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const r = await fetch(`/api/v1/topologies/${encodeURIComponent(state.id)}/${name}${q}`, { method: "POST", headers });
  let text = `${r.status}`;
  try { text = (await r.json()).message; } catch (_) { /* not JSON */ }
  $("#action-result").textContent = `${name}: ${text}`;
  $("#action-result").className = r.ok ? "" : "bp";
}

async function refresh() {
  try {
    const list = await getJson("/api/v1/topologies");
    state.actions = list.actions;
    $("#actions").hidden = !list.actions;
    if (!state.id || !list.topologies.some((t) => t.id === state.id)) state.id = list.topologies[0]?.id ?? null;
    drawNav(list);
    if (state.id) {
      const d = await getJson(`/api/v1/topologies/${encodeURIComponent(state.id)}`);
      drawSummary(d);
      drawDag(d.graph);
      drawWindows(d);
      drawLive(d);
      drawWorkers(d);
    } else {
      $("#summary").innerHTML = `<p class="muted">No topology yet.</p>`;
    }
    $("#clock").textContent = new Date().toLocaleTimeString();
  } catch (e) {
    $("#clock").textContent = `offline: ${e.message}`;
  }
}

window.addEventListener("hashchange", () => { state.id = decodeURIComponent(location.hash.slice(1)) || null; refresh(); });
document.addEventListener("click", (ev) => {
  const w = ev.target.closest("[data-window]");
  if (w) { state.window = w.dataset.window; refresh(); }
  const a = ev.target.closest("[data-action]");
  if (a) act(a.dataset.action);
});
$("#token").value = sessionStorage.getItem("topo-ui-token") || "";
refresh();
setInterval(refresh, REFRESH_MS);
