// hopper dashboard: one page, no build step, no external requests. It reads the
// management API under {base}/api, follows /api/events for live updates (no polling for
// what an event can update), and hides every action in read-only mode.
"use strict";

const BASE = document.querySelector('meta[name="hopper-base"]').content;
const API = BASE + "/api";
const STATES = ["waiting", "waiting-children", "delayed", "active", "completed", "failed"];
const PAGE = 50;
const state = { config: { readOnly: false, authRequired: false }, token: sessionStorage.getItem("hopper-token") || "", source: null, refresh: null };

// ----- DOM helpers (text only: job data is untrusted) ---------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    // Through the CSSOM: the page's CSP forbids inline style attributes.
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
const view = () => document.getElementById("view");
// Tables scroll sideways inside their panel on a narrow screen instead of widening the page.
function tableWrap(table) { return h("div", { class: "table-wrap" }, table); }
const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + "s"}`;
// Views are redrawn whenever an event arrives for what they show. A form control with a
// `data-keep` key keeps what the user typed or chose across a redraw (and its focus and
// caret), so an event never wipes a half-typed name, a filter or an edit; a control that
// submitted its value gives it up (`submitted`) so the redraw shows the server's state.
const markDirty = (e) => { if (e.target.dataset && e.target.dataset.keep) e.target.dataset.dirty = "1"; };
for (const type of ["input", "change"]) document.addEventListener(type, markDirty, true);
function submitted(...controls) { for (const c of controls) delete c.dataset.dirty; }
function show(...nodes) {
  const root = view();
  const drafts = new Map();
  for (const el of root.querySelectorAll("[data-keep][data-dirty]")) drafts.set(el.dataset.keep, el.value);
  const active = document.activeElement;
  const focusKey = active && root.contains(active) && active.dataset.keep;
  let caret = null;
  try { if (focusKey) caret = [active.selectionStart, active.selectionEnd]; } catch (_) { caret = null; }
  root.replaceChildren(...nodes);
  for (const el of root.querySelectorAll("[data-keep]")) {
    const key = el.dataset.keep;
    if (drafts.has(key)) {
      el.dataset.dirty = "1";
      if (el.value !== drafts.get(key)) {
        el.value = drafts.get(key);
        el.dispatchEvent(new Event(el.tagName === "SELECT" ? "change" : "input", { bubbles: true }));
      }
    }
    if (key === focusKey) {
      el.focus();
      try { if (caret && caret[0] !== null) el.setSelectionRange(caret[0], caret[1]); } catch (_) { /* no caret */ }
    }
  }
}
// The button the user last pressed (outside dialogs): a notice about its action must not
// cover it, even after the view is redrawn with a new button in the same place.
let lastPressed = null;
document.addEventListener("pointerdown", (e) => {
  const b = e.target instanceof Element && e.target.closest("button");
  if (b && !b.closest("dialog")) { lastPressed = b; b._rect = b.getBoundingClientRect(); }
}, true);
document.addEventListener("keydown", (e) => {
  const b = e.target instanceof Element && e.target.closest("button");
  if (b && !b.closest("dialog") && (e.key === "Enter" || e.key === " ")) { lastPressed = b; b._rect = b.getBoundingClientRect(); }
}, true);

function overlaps(a, b) { return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom; }

function placeToast(t, avoid) {
  t.classList.remove("above");
  t.style.top = "";
  if (!avoid) return;
  if (!overlaps(t.getBoundingClientRect(), avoid)) return;
  // Over the button at the bottom: show it just under the header instead.
  t.classList.add("above");
  t.style.top = Math.round(document.querySelector("header.top").getBoundingClientRect().bottom + 10) + "px";
}

function toast(message, error) {
  const t = document.getElementById("toast");
  t.textContent = message; t.className = "toast" + (error ? " err" : ""); t.hidden = false;
  const avoid = lastPressed && lastPressed.isConnected ? lastPressed.getBoundingClientRect() : (lastPressed && lastPressed._rect);
  placeToast(t, avoid);
  clearTimeout(t._timer); t._timer = setTimeout(() => { t.hidden = true; }, 3500);
}
document.getElementById("toast").addEventListener("click", (e) => { e.currentTarget.hidden = true; });
const enc = encodeURIComponent;
function fmtTime(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }
function age(iso) { return iso ? duration(Date.now() - new Date(iso).getTime()) : "—"; }
function duration(ms) {
  const secs = Math.max(0, Math.round(ms / 1000));
  if (secs < 60) return secs + " s";
  if (secs < 3600) return Math.round(secs / 60) + " min";
  if (secs < 86400) return (secs / 3600).toFixed(1) + " h";
  return (secs / 86400).toFixed(1) + " d";
}
function pretty(v) { return JSON.stringify(v, null, 2); }
function stateBadge(st) { return h("span", { class: "state " + st }, st); }

// ----- API ------------------------------------------------------------------------------

class ApiError extends Error { constructor(status, code, message) { super(message); this.status = status; this.code = code; } }

async function api(path, opts = {}) {
  const headers = { ...(opts.body !== undefined ? { "content-type": "application/json" } : {}) };
  const sent = state.token;
  if (sent) headers.authorization = "Bearer " + sent;
  const res = await fetch(API + path, { method: opts.method || "GET", headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  let payload = null;
  try { payload = await res.json(); } catch (_) { /* empty body */ }
  if (!res.ok) {
    const err = (payload && payload.error) || { code: "HTTP_" + res.status, message: res.statusText };
    if (res.status === 401) {
      // Only a token that was sent can have been refused; without one, ask for it. The
      // event stream would only be refused too: it stops until a token is entered, and the
      // status says why instead of "reconnecting" forever.
      if (state.source) { state.source.close(); state.source = null; }
      setLive(false, sent ? "token refused" : "signed out");
      if (sent) askToken("The token was refused. Enter a valid token.");
      else askToken(NEED_TOKEN);
    }
    throw new ApiError(res.status, err.code, err.message);
  }
  return payload;
}

async function act(label, path, body, method = "POST") {
  try {
    const out = await api(path, { method, body: body === undefined ? {} : body });
    toast(label + ": done");
    return out;
  } catch (e) {
    toast(label + ": " + e.message, true);
    throw e;
  }
}

const NEED_TOKEN = "This server requires a bearer token. Enter it to continue.";
function askToken(message) {
  const d = document.getElementById("auth-dialog");
  document.getElementById("auth-message").textContent = message;
  if (!d.open) d.showModal();
}

document.getElementById("auth-form").addEventListener("submit", () => {
  state.token = document.getElementById("auth-token").value.trim();
  sessionStorage.setItem("hopper-token", state.token);
  connectEvents();
  route(true);
});

// Every bulk or destructive action asks first: `ok` names what the button does, `danger`
// marks what cannot be undone.
function confirmAction(title, text, ok = "Confirm", danger = true) {
  const d = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const okButton = document.getElementById("confirm-ok");
  okButton.textContent = ok;
  okButton.className = danger ? "danger" : "primary";
  d.returnValue = "";
  d.showModal();
  return new Promise((resolve) => d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true }));
}

// ----- live updates -------------------------------------------------------------------

function setLive(on, text) {
  const el = document.getElementById("live");
  el.classList.toggle("on", on);
  document.getElementById("live-text").textContent = text;
}

function connectEvents() {
  if (state.source) state.source.close();
  const url = API + "/events" + (state.token ? "?token=" + enc(state.token) : "");
  const src = new EventSource(url);
  state.source = src;
  src.addEventListener("connected", () => setLive(true, "live"));
  src.onerror = () => {
    if (state.source !== src) return;  // closed for a refused token: its status stays
    setLive(false, "reconnecting");
    // EventSource retries by itself; a closed one (e.g. a 401) is reopened after a pause.
    if (src.readyState === EventSource.CLOSED) setTimeout(() => { if (state.source === src) connectEvents(); }, 3000);
  };
  const names = ["job:waiting", "job:active", "job:completed", "job:failed", "job:delayed", "job:removed",
    "job:progress", "job:stalled", "job:waiting-children", "queue:paused", "queue:resumed", "queue:drained"];
  for (const n of names) src.addEventListener(n, (ev) => onEvent(JSON.parse(ev.data)));
}

let pending = null;
function onEvent(ev) {
  if (!state.refresh) return;
  if (state.refresh.queue && state.refresh.queue !== ev.queueName) return;
  // Coalesce bursts: one refresh of the visible view per 250 ms at most.
  if (pending) return;
  pending = setTimeout(() => { pending = null; if (state.refresh) state.refresh.fn(ev); }, 250);
}

// ----- charts ---------------------------------------------------------------------------

// Jobs pushed and jobs finished (completed or failed) per minute, on one scale: the
// dashed line is pushes, the solid one finishes, so a queue that fills faster than it
// drains shows as a gap between them. `pushed` is absent from servers without push counts.
function sparkline(finished, pushed, width = 120, height = 28) {
  const max = Math.max(1, ...finished, ...(pushed || []));
  const step = finished.length > 1 ? width / (finished.length - 1) : width;
  const line = (points, cls) => s("polyline", { class: cls, points: points.map((p, i) => `${(i * step).toFixed(1)},${(height - 2 - (p / max) * (height - 4)).toFixed(1)}`).join(" ") });
  const sum = (points) => points.reduce((a, b) => a + b, 0);
  const label = (pushed ? `${sum(pushed)} jobs pushed and ` : "") + `${sum(finished)} finished (completed or failed) in the last hour`;
  return s("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    s("line", { class: "base", x1: 0, y1: height - 1, x2: width, y2: height - 1 }),
    ...(pushed ? [line(pushed, "pushed")] : []),
    line(finished, "finished"));
}

// y-axis ticks for values up to `n`: at most five, a round step (1, 2 or 5 times a power
// of ten, at least 1), from 0 to the first tick at or above `n`.
function yTicks(n) {
  const raw = Math.max(1, n) / 4, p = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw));
  const top = step * Math.ceil(Math.max(1, n) / step);
  const out = [];
  for (let v = 0; v <= top; v += step) out.push(v);
  return out;
}

function barChart(buckets, from, to, stepMs, unit, width = 640, height = 180) {
  width = Math.round(Math.max(280, Math.min(1200, width)));
  // Stacked bars (completed, failed) on a time axis from `from` to `to`: empty periods
  // stay empty, so gaps show. A y-axis with ticks and a title, and a legend below.
  // Periods with pushes alone have buckets too (pushedCount); this chart is of finishes.
  const all = buckets.filter((b) => b.jobName === "__all__" && b.completedCount + b.failedCount > 0);
  if (!all.length) return h("div", { class: "empty" }, "No finished jobs in this range.");
  const ticks = yTicks(Math.max(...all.map((b) => b.completedCount + b.failedCount)));
  const max = ticks[ticks.length - 1];
  const left = 52, top = 8, bottom = 22, plot = width - left - 4, span = Math.max(stepMs, to - from);
  const ph = height - top - bottom, base = height - bottom;
  const bw = Math.max(2, Math.min(40, (plot * stepMs) / span - 1));
  const svg = s("svg", { class: "chart", width: "100%", height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Jobs completed and failed ${unit}`, "data-testid": "metrics-chart" });
  // y-axis title, rotated along the axis
  svg.append(s("text", { class: "axis-title", x: -(top + ph / 2), y: 10, transform: "rotate(-90)", "text-anchor": "middle", "data-testid": "y-title" }, `jobs ${unit}`));
  for (const v of ticks) {
    const y = base - (v / max) * ph;
    if (v > 0) svg.append(s("line", { class: "grid", x1: left - 4, y1: y, x2: width, y2: y }));
    svg.append(s("text", { class: "y-tick", x: left - 8, y: y + 3.5, "text-anchor": "end" }, String(v)));
  }
  svg.append(s("line", { x1: left - 4, y1: base, x2: width, y2: base }));
  for (const b of all) {
    const t = new Date(b.periodStart).getTime();
    const x = left + ((t - from) / span) * plot;
    const ch = (b.completedCount / max) * ph;
    const fh = (b.failedCount / max) * ph;
    const c = s("rect", { class: "c", x, y: base - ch, width: bw, height: ch });
    c.append(s("title", {}, `${fmtTime(b.periodStart)}: ${b.completedCount} completed, ${b.failedCount} failed`));
    const f = s("rect", { class: "f", x, y: base - ch - fh, width: bw, height: fh });
    f.append(s("title", {}, `${fmtTime(b.periodStart)}: ${b.failedCount} failed`));
    svg.append(c, f);
  }
  svg.append(s("text", { x: left, y: height - 5 }, new Date(from).toLocaleTimeString()));
  svg.append(s("text", { x: width, y: height - 5, "text-anchor": "end" }, new Date(to).toLocaleTimeString()));
  const done = all.reduce((a, b) => a + b.completedCount, 0), failed = all.reduce((a, b) => a + b.failedCount, 0);
  const legend = h("div", { class: "legend", "data-testid": "chart-legend" },
    h("span", {}, h("span", { class: "sw c" }), `completed (${done})`),
    h("span", {}, h("span", { class: "sw f" }), `failed (${failed})`));
  return h("div", {}, svg, legend);
}

// ----- views ----------------------------------------------------------------------------

function sparkCell(q, finished, pushed) {
  if (!finished) return h("td", { class: "muted", title: "Metrics are off or unavailable" }, "—");
  const done = finished.reduce((a, b) => a + b, 0);
  const added = pushed ? pushed.reduce((a, b) => a + b, 0) : null;
  const waiting = q.counts.waiting + q.counts.delayed + q.counts["waiting-children"];
  const title = (added === null ? "" : `${plural(added, "job")} pushed (dashed line) and `) +
    `${plural(done, "job")} finished (completed or failed; solid line) in the last hour, per minute. ` +
    `${waiting} ${waiting === 1 ? "is" : "are"} waiting or delayed now.`;
  const text = (added === null ? "" : `${added} pushed · `) + `${done} finished`;
  return h("td", { title, "data-testid": `spark-${q.name}` }, h("div", { class: "spark-cell" }, sparkline(finished, pushed), h("span", { class: "n" }, text)));
}

function countCell(queue, st, n) {
  return h("td", { class: "num" }, h("a", { class: "count-link" + (n ? "" : " zero"), href: `#/queue/${enc(queue)}?state=${st}`, "data-testid": `count-${queue}-${st}` }, n));
}

async function overview() {
  const queues = await api("/queues");
  const [sparks, failures, workers, schedulers, cluster] = await Promise.all([
    api("/metrics/sparklines").catch(() => ({ data: {} })),
    Promise.all(queues.data.filter((x) => x.counts.failed).map((x) => api(`/queues/${enc(x.name)}/failures`).then((f) => [x.name, f.data]))),
    api("/workers").catch(() => ({ data: [] })),
    api("/schedulers").catch(() => ({ data: [] })),
    loadCluster(),
  ]);
  const filter = h("input", { type: "search", class: "queue-filter", placeholder: "Filter queues by name", "data-testid": "queue-filter", "data-keep": "queue-filter" });
  const body = h("tbody");
  const rows = queues.data.map((q) => {
    const tr = h("tr", { "data-testid": `queue-row-${q.name}`, "data-name": q.name },
      h("td", { class: "nowrap-cell" }, h("a", { href: `#/queue/${enc(q.name)}` }, q.name), " ", q.isPaused ? h("span", { class: "badge paused" }, "paused") : null),
      STATES.map((st) => countCell(q.name, st, q.counts[st])),
      sparkCell(q, (sparks.data || {})[q.name], ((sparks.meta || {}).pushed || {})[q.name]),
      h("td", { class: "num", title: q.oldestWaitingAt ? "waiting since " + fmtTime(q.oldestWaitingAt) : "" }, age(q.oldestWaitingAt)),
      h("td", { class: "muted" }, q.latestActivity ? age(q.latestActivity) + " ago" : "—"));
    body.append(tr);
    return tr;
  });
  filter.addEventListener("input", () => {
    const f = filter.value.toLowerCase();
    for (const tr of rows) tr.hidden = f && !tr.dataset.name.toLowerCase().includes(f);
  });
  const table = queues.data.length
    ? tableWrap(h("table", { "data-testid": "queues" },
      h("thead", {}, h("tr", {}, h("th", {}, "Queue"), STATES.map((st) => h("th", { class: "num" }, st)), h("th", { title: "Jobs pushed (dashed) and finished (completed or failed; solid) per minute over the last hour" }, "Pushed and finished, last hour"), h("th", { class: "num" }, "Oldest waiting"), h("th", {}, "Activity"))),
      body))
    : h("div", { class: "empty" }, "No queues yet. Push a job to create one.");
  const failurePanel = h("div", { class: "panel", "data-testid": "failures" }, h("h2", {}, "Failures by reason"));
  const groups = failures.filter(([, f]) => f.length);
  if (!groups.length) failurePanel.append(h("div", { class: "empty" }, "No failed jobs."));
  for (const [queue, list] of groups) {
    failurePanel.append(h("h3", {}, h("a", { href: `#/queue/${enc(queue)}?state=failed` }, queue)));
    failurePanel.append(tableWrap(h("table", {}, h("tbody", {}, list.slice(0, 10).map((f) => h("tr", {},
      h("td", { class: "mono grow" }, f.reason || "(no message)"),
      h("td", { class: "num" }, f.count),
      h("td", { class: "num" }, h("button", { class: "small action", "data-testid": "retry-reason", "data-bulk": "", onclick: async () => {
        if (!(await confirmAction(`Retry ${plural(f.count, "failed job")} of ${queue}`, `Retry every failed job of ${queue} whose error is "${f.reason || "(no message)"}"? They go back to waiting.`, `Retry ${f.count}`, false))) return;
        await act(`Retry ${f.count}`, `/queues/${enc(queue)}/failures/retry`, { reason: f.reason }); route();
      } }, "Retry all"))))))));
  }
  show(
    h("div", { class: "spread" }, h("div", {}, h("h1", {}, "Queues"), h("div", { class: "muted", "data-testid": "queue-count" }, `${plural(queues.data.length, "queue")} · counts update live`)), filter),
    h("div", { class: "panel" }, table),
    failurePanel,
    workersPanel(workers.data),
    schedulersPanel(schedulers.data, true),
    clusterPanel(cluster));
  state.refresh = { queue: null, fn: () => overview() };
}

// The cluster view: `{data}` or, when it could not be read (PostgreSQL down), `{error}`.
const loadCluster = () => api("/cluster").catch((e) => ({ error: e.message }));
// Brokers come and go without a job event to tell: in cluster mode the panel reloads
// itself this often while it is on screen.
const CLUSTER_REFRESH_MS = 5000;

// Brokers and slot ownership (cluster mode); a one-line note outside it. Ages are
// judged by the cluster's clock (`now`, PostgreSQL's), not the browser's.
function clusterPanel(cluster) {
  const c = cluster.data;
  if (c && c.mode === "single") return h("p", { class: "muted", "data-testid": "cluster" }, "Single server: not part of a cluster.");
  const panel = h("section", { class: "panel", "data-testid": "cluster", "aria-labelledby": "cluster-title" }, h("h2", { id: "cluster-title" }, "Cluster"));
  setTimeout(async () => {
    if (!panel.isConnected) return;
    const next = await loadCluster();
    if (panel.isConnected) panel.replaceWith(clusterPanel(next));
  }, CLUSTER_REFRESH_MS);
  if (!c) {
    panel.append(h("div", { class: "empty", role: "alert" }, "Cluster view unavailable: " + cluster.error));
    return panel;
  }
  const now = new Date(c.now).getTime();
  const ago = (iso) => duration(now - new Date(iso).getTime());
  const live = c.brokers.filter((b) => b.status === "live").length;
  panel.append(h("div", { class: "muted", "data-testid": "cluster-summary" },
    `namespace ${c.namespace} · served by ${c.servedBy} · ${live} of ${plural(c.brokers.length, "broker")} live`));
  panel.append(h("h3", { class: "gap" }, "Slots"), c.slots.length
    ? tableWrap(h("table", {},
      h("thead", {}, h("tr", {}, h("th", { class: "num" }, "Slot"), h("th", {}, "Owner"), h("th", { class: "num" }, "Epoch"),
        h("th", {}, "Lease left"), h("th", {}, "Owner's backend"))),
      h("tbody", {}, c.slots.map((x) => h("tr", { "data-testid": `slot-row-${x.slot}` },
        h("td", { class: "num" }, x.slot), h("td", { class: "mono" }, x.owner), h("td", { class: "num" }, x.epoch),
        h("td", { class: "nowrap-cell", title: fmtTime(x.leaseUntil) }, x.leaseRemainingMs ? duration(x.leaseRemainingMs) : "ended"),
        h("td", { class: "mono muted" }, x.ownerHttp || "—"))))))
    : h("div", { class: "empty" }, "No broker has owned a slot yet."));
  panel.append(h("h3", { class: "gap" }, "Brokers"), c.brokers.length
    ? tableWrap(h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Broker"), h("th", {}, "Address"), h("th", {}, "Status"), h("th", {}, "Started"), h("th", {}, "Last seen"))),
      h("tbody", {}, c.brokers.map((b) => h("tr", { "data-testid": `broker-row-${b.id}` },
        h("td", { class: "nowrap-cell" }, h("span", { class: "mono" }, b.id), " ", b.slots.map((n) => h("span", { class: "badge" }, `owns slot ${n}`))),
        h("td", { class: "mono nowrap-cell" }, b.http || "—", b.tcp ? h("div", { class: "muted" }, `tcp ${b.tcp}`) : null),
        h("td", {}, h("span", { class: "badge broker " + b.status }, b.status)),
        h("td", { class: "muted nowrap-cell", title: fmtTime(b.startedAt) }, ago(b.startedAt) + " ago"),
        h("td", { class: "muted nowrap-cell", title: fmtTime(b.lastSeenAt) }, ago(b.lastSeenAt) + " ago"))))))
    : h("div", { class: "empty" }, "No broker is announced."));
  return panel;
}

function workersPanel(workers) {
  const panel = h("div", { class: "panel", "data-testid": "workers" }, h("h2", {}, "Workers"));
  if (!workers.length) {
    panel.append(h("div", { class: "empty" }, "No workers registered."));
    return panel;
  }
  panel.append(tableWrap(h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "Queues"), h("th", { class: "num" }, "Concurrency"),
      h("th", { class: "num" }, "Active"), h("th", { class: "num" }, "Processed"), h("th", { class: "num" }, "Failed"),
      h("th", {}, "Host"), h("th", {}, "Last heartbeat"))),
    h("tbody", {}, workers.map((w) => h("tr", { "data-testid": `worker-row-${w.id}` },
      h("td", {}, w.name, " ", h("span", { class: "badge worker " + w.status, title: w.id }, w.status)),
      h("td", {}, w.queues.map((q) => h("a", { class: "badge", href: `#/queue/${enc(q)}` }, q))),
      h("td", { class: "num" }, w.concurrency), h("td", { class: "num" }, w.activeJobs),
      h("td", { class: "num" }, w.processedJobs), h("td", { class: "num" }, w.failedJobs),
      h("td", { class: "muted" }, [w.hostname, w.pid].filter((x) => x !== null).join(" · ") || "—"),
      h("td", { class: "muted", title: fmtTime(w.lastHeartbeatAt) }, age(w.lastHeartbeatAt) + " ago")))))));
  return panel;
}

function fmtEvery(ms) {
  const units = [[86400000, "d"], [3600000, "h"], [60000, "min"], [1000, "s"]];
  for (const [size, unit] of units) if (ms >= size && ms % size === 0) return `every ${ms / size} ${unit}`;
  return `every ${ms} ms`;
}
function until(iso) {
  if (!iso) return "never";
  const ms = new Date(iso).getTime() - Date.now();
  return ms <= 0 ? "due" : "in " + duration(ms);
}

// Job schedulers (crons): all of them on the overview (`withQueue`), a queue's own on its view.
function schedulersPanel(schedulers, withQueue) {
  const panel = h("div", { class: "panel", "data-testid": "schedulers" }, h("h2", {}, "Schedulers"));
  if (!schedulers.length) {
    panel.append(h("div", { class: "empty" }, "No job schedulers."));
    return panel;
  }
  panel.append(tableWrap(h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "Scheduler"), withQueue ? h("th", {}, "Queue") : null, h("th", {}, "Schedule"),
      h("th", {}, "Next run"), h("th", { class: "num" }, "Executions"), h("th", { class: "num" }, "Limit"))),
    h("tbody", {}, schedulers.map((x) => h("tr", { "data-testid": `scheduler-row-${x.name}` },
      h("td", {}, x.name, " ", h("span", { class: "muted", title: "the name of the jobs it pushes" }, x.jobName)),
      withQueue ? h("td", {}, h("a", { class: "badge", href: `#/queue/${enc(x.queueName)}` }, x.queueName)) : null,
      h("td", { class: x.schedule ? "mono" : "" }, x.schedule ? x.schedule + (x.timezone ? ` (${x.timezone})` : "") : fmtEvery(x.repeatEvery)),
      h("td", { title: fmtTime(x.nextRunAt) }, x.nextRunAt ? fmtTime(x.nextRunAt) + " · " + until(x.nextRunAt) : "never"),
      h("td", { class: "num" }, x.executions),
      h("td", { class: "num" }, x.maxLimit === null ? "—" : x.maxLimit)))))));
  return panel;
}

function limitsLine(limits) {
  const parts = [];
  const r = limits.rateLimit;
  if (r) parts.push(`Rate limit: ${r.max} per ${r.duration} ms` + (r.expiresAt ? ` until ${fmtTime(r.expiresAt)}` : "") + (limits.rateLimitTtl > 0 ? ` (next pull in ${limits.rateLimitTtl} ms)` : ""));
  if (limits.concurrency !== null) parts.push(`Concurrency: ${limits.concurrency}` + (limits.concurrencyMaxed ? " (full)" : ""));
  return h("div", { class: "muted", "data-testid": "queue-limits" }, parts.length ? parts.join(" · ") : "No rate or concurrency limit.");
}

async function queueView(name, params) {
  const st = STATES.includes(params.get("state")) ? params.get("state") : "waiting";
  const start = Math.max(0, parseInt(params.get("start") || "0", 10) || 0);
  const q = enc(name);
  const [detail, jobs, groups, schedulers] = await Promise.all([
    api(`/queues/${q}`), api(`/queues/${q}/jobs?state=${st}&start=${start}&end=${start + PAGE}`), api(`/queues/${q}/groups`),
    api(`/schedulers?queue=${q}`).catch(() => ({ data: [] }))]);
  const d = detail.data;
  const tabs = h("div", { class: "tabs" }, STATES.map((x) => h("a", { class: x === st ? "on" : "", href: `#/queue/${q}?state=${x}`, "data-testid": `tab-${x}` }, `${x} (${d.counts[x]})`)));
  const nameFilter = h("input", { type: "search", placeholder: "Filter this page by job name", "data-keep": `job-name-filter:${name}` });
  const groupFilter = h("input", { type: "search", placeholder: "Filter this page by group", "data-keep": `job-group-filter:${name}` });
  const tbody = h("tbody");
  const rows = jobs.data.map((j) => {
    const tr = h("tr", { "data-testid": `job-row-${j.id}`, "data-name": j.name, "data-group": j.groupId || "" },
      h("td", { class: "mono nowrap-cell" }, h("a", { href: `#/job/${q}/${enc(j.id)}` }, j.id)),
      h("td", {}, j.name), h("td", {}, stateBadge(j.state)), h("td", { class: "num" }, j.priority),
      h("td", { class: "num" }, j.attemptsMade), h("td", { class: "nowrap-cell" }, fmtTime(j.createdAt)),
      h("td", { class: "mono muted" }, j.failedReason || ""),
      h("td", { class: "num" }, jobActions(name, j, () => queueView(name, params))));
    tbody.append(tr);
    return tr;
  });
  const applyFilters = () => {
    const n = nameFilter.value.toLowerCase(), g = groupFilter.value.toLowerCase();
    for (const tr of rows) tr.hidden = (n && !tr.dataset.name.toLowerCase().includes(n)) || (g && !tr.dataset.group.toLowerCase().includes(g));
  };
  nameFilter.addEventListener("input", applyFilters); groupFilter.addEventListener("input", applyFilters);
  const total = jobs.meta.total;
  const pager = h("div", { class: "row end" },
    h("span", { class: "muted" }, total ? `${start + 1}–${Math.min(start + PAGE, total)} of ${total}` : "0 jobs"),
    h("button", { disabled: start === 0, onclick: () => { location.hash = `#/queue/${q}?state=${st}&start=${Math.max(0, start - PAGE)}`; } }, "Previous"),
    h("button", { disabled: start + PAGE >= total, onclick: () => { location.hash = `#/queue/${q}?state=${st}&start=${start + PAGE}`; } }, "Next"));
  const table = jobs.data.length
    ? tableWrap(h("table", { "data-testid": "jobs" }, h("thead", {}, h("tr", {}, ["Id", "Name", "State", "Priority", "Attempts", "Created", "Error", ""].map((x) => h("th", {}, x)))), tbody))
    : h("div", { class: "empty" }, `No ${st} jobs.`);
  show(
    h("div", { class: "spread" },
      h("div", {}, h("div", { class: "muted" }, h("a", { href: "#/" }, "Queues"), " / "), h("h1", { "data-testid": "queue-title" }, name, " ", d.isPaused ? h("span", { class: "badge paused" }, "paused") : null),
        d.pausedNames.filter((n) => n !== "__all__").length ? h("div", { class: "muted" }, "Paused job names: " + d.pausedNames.filter((n) => n !== "__all__").join(", ")) : null,
        d.limits ? limitsLine(d.limits) : null),
      queueActions(name, d)),
    h("div", { class: "panel" }, tabs, h("div", { class: "filters" }, nameFilter, groupFilter), table, pager),
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("h2", {}, "Groups"), groups.data.length
        ? tableWrap(h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", { class: "num" }, "Active"), h("th", { class: "num" }, "Waiting"))),
          h("tbody", {}, groups.data.map((g) => h("tr", {}, h("td", {}, g.groupId), h("td", { class: "num" }, g.activeCount), h("td", { class: "num" }, g.waitingCount))))))
        : h("div", { class: "empty" }, "No groups.")),
      metricsPanel(name)),
    schedulersPanel(schedulers.data, false));
  state.refresh = { queue: name, fn: () => queueView(name, params) };
}

function queueActions(name, d) {
  const q = enc(name);
  const reload = () => route();
  const c = d.counts;
  const jobName = h("input", { class: "name", placeholder: "job name (optional)", "data-testid": "pause-name", "data-keep": `pause-name:${name}` });
  const pause = h("button", { "data-testid": "pause", onclick: async () => { await act("Pause", `/queues/${q}/pause`, jobName.value ? { jobName: jobName.value } : {}); submitted(jobName); reload(); } }, "Pause");
  const resume = h("button", { "data-testid": "resume", onclick: async () => { await act("Resume", `/queues/${q}/resume`, jobName.value ? { jobName: jobName.value } : {}); submitted(jobName); reload(); } }, "Resume");
  // Only the one that changes something is enabled: Resume on a paused queue (or job
  // name), Pause on a running one.
  const pauseState = () => {
    const n = jobName.value.trim();
    const paused = n ? d.isPaused || d.pausedNames.includes(n) : d.isPaused;
    pause.disabled = paused;
    resume.disabled = n ? !d.pausedNames.includes(n) : !d.isPaused;
  };
  jobName.addEventListener("input", pauseState);
  pauseState();
  // A bulk action: disabled when there is nothing to act on, and always confirmed.
  const bulk = (label, testid, n, confirm, run, danger = false) => h("button", {
    class: danger ? "danger" : null, "data-testid": testid, "data-bulk": "", disabled: !n,
    title: n ? null : "Nothing to act on",
    onclick: async () => {
      const [title, text, ok] = confirm();
      if (!(await confirmAction(title, text, ok, danger))) return;
      await run();
    } }, label);
  const cleanState = h("select", { "data-testid": "clean-state", "data-keep": `clean-state:${name}` }, ["completed", "failed", "waiting", "delayed"].map((x) => h("option", { value: x }, x)));
  const grace = h("input", { type: "number", class: "secs", min: 0, value: 3600, title: "grace in seconds", "aria-label": "grace in seconds", "data-keep": `clean-grace:${name}` });
  const clean = bulk("Clean", "clean", c[cleanState.value], () => [`Clean ${name}`,
    `Remove the ${cleanState.value} jobs of ${name} older than ${Math.max(0, Number(grace.value) || 0)} s (up to ${c[cleanState.value]})?`, "Clean"],
  async () => { await act("Clean", `/queues/${q}/clean`, { state: cleanState.value, grace: Math.max(0, Number(grace.value) || 0) * 1000 }); reload(); }, true);
  cleanState.addEventListener("change", () => { clean.disabled = !c[cleanState.value]; clean.title = clean.disabled ? "Nothing to act on" : ""; });
  const drainable = c.waiting + c.delayed;
  return h("div", { class: "panel action", style: "margin:0", "data-testid": "queue-actions" },
    h("div", { class: "row" },
      h("div", { class: "inline-form" }, jobName, pause, resume),
      bulk("Retry all failed", "retry-failed", c.failed, () => [`Retry failed jobs of ${name}`, `Retry all ${plural(c.failed, "failed job")}? They go back to waiting.`, `Retry ${c.failed}`],
        async () => { await act("Retry failed", `/queues/${q}/retry`, { state: "failed" }); reload(); }),
      bulk("Retry all completed", "retry-completed", c.completed, () => [`Retry completed jobs of ${name}`, `Run all ${plural(c.completed, "completed job")} again? They go back to waiting.`, `Retry ${c.completed}`],
        async () => { await act("Retry completed", `/queues/${q}/retry`, { state: "completed" }); reload(); }),
      bulk("Promote all delayed", "promote-delayed", c.delayed, () => [`Promote delayed jobs of ${name}`, `Move all ${plural(c.delayed, "delayed job")} to waiting now?`, `Promote ${c.delayed}`],
        async () => { await act("Promote", `/queues/${q}/promote`); reload(); })),
    h("div", { class: "row", style: "margin-top:8px" },
      h("div", { class: "inline-form" }, "Clean", cleanState, "older than", grace, "s", clean),
      bulk("Drain", "drain", drainable, () => [`Drain ${name}`, `Remove every waiting and delayed job of this queue (${drainable})? This cannot be undone.`, "Drain"],
        async () => { await act("Drain", `/queues/${q}/drain`); reload(); }, true),
      bulk("Obliterate", "obliterate", true, () => [`Obliterate ${name}`, "Delete this queue and all its jobs, including active ones? This cannot be undone.", "Obliterate"],
        async () => { await act("Obliterate", `/queues/${q}?force=true`, undefined, "DELETE"); location.hash = "#/"; }, true)));
}

function jobActions(queue, j, reload) {
  const base = `/queues/${enc(queue)}/jobs/${enc(j.id)}`;
  const out = h("span", { class: "row end action" });
  const button = (label, fn, danger) => out.append(h("button", { class: "small" + (danger ? " danger" : ""), "data-testid": `${label.toLowerCase()}-${j.id}`, onclick: async (e) => { e.preventDefault(); await fn(); reload(); } }, label));
  if (j.state === "failed" || j.state === "completed") button("Retry", () => act("Retry", base + "/retry"));
  if (j.state === "delayed") button("Promote", () => act("Promote", base + "/promote"));
  if (j.state === "active") button("Cancel", async () => { if (await confirmAction("Cancel job", `Fail the running job ${j.id} for good?`, "Cancel job")) await act("Cancel", base + "/cancel"); }, true);
  if (j.state !== "active") button("Remove", async () => { if (await confirmAction("Remove job", `Delete the ${j.state} job ${j.id}? This cannot be undone.`, "Remove")) await act("Remove", base, undefined, "DELETE"); }, true);
  return out;
}

function metricsPanel(name) {
  const panel = h("div", { class: "panel" });
  const gran = h("select", { "data-keep": `metrics-granularity:${name}` }, h("option", { value: "minute" }, "per minute"), h("option", { value: "hour" }, "per hour"));
  const range = h("select", { "data-keep": `metrics-range:${name}` }, [["1", "last hour"], ["6", "last 6 hours"], ["24", "last 24 hours"]].map(([v, t]) => h("option", { value: v }, t)));
  const chart = h("div", {}, loading());
  let loads = 0;  // only the latest request draws (a restored choice asks again at once)
  const load = async () => {
    const to = new Date(), from = new Date(to.getTime() - Number(range.value) * 3600e3);
    const seq = ++loads;
    try {
      const m = await api(`/queues/${enc(name)}/metrics?granularity=${gran.value}&from=${from.toISOString()}&to=${to.toISOString()}`);
      if (seq !== loads) return;
      const hourly = gran.value === "hour";
      chart.replaceChildren(barChart(m.data, from.getTime(), to.getTime(), hourly ? 3600e3 : 60e3, hourly ? "per hour" : "per minute", chart.clientWidth || 640));
    } catch (e) { if (seq === loads) chart.replaceChildren(h("div", { class: "empty" }, e.message)); }
  };
  gran.addEventListener("change", load); range.addEventListener("change", load);
  panel.append(h("div", { class: "spread" }, h("h2", {}, "Throughput"), h("div", { class: "inline-form" }, gran, range)), chart);
  load();
  return panel;
}

async function jobView(queue, id) {
  const q = enc(queue);
  const [res, kids, logs] = await Promise.all([api(`/queues/${q}/jobs/${enc(id)}`), api(`/queues/${q}/jobs/${enc(id)}/children`),
    api(`/queues/${q}/jobs/${enc(id)}/logs`).catch(() => ({ data: [], meta: { total: 0 } }))]);
  const j = res.data;
  const reload = () => jobView(queue, id);
  const timeline = h("ul", { class: "timeline" },
    h("li", {}, "created ", fmtTime(j.createdAt)),
    j.delayUntil ? h("li", {}, "runs at ", fmtTime(j.delayUntil)) : null,
    j.processedAt ? h("li", {}, "started ", fmtTime(j.processedAt)) : null,
    j.completedAt ? h("li", {}, "completed ", fmtTime(j.completedAt)) : null,
    j.failedAt ? h("li", {}, "failed ", fmtTime(j.failedAt)) : null);
  const edit = h("div", { class: "panel action" }, h("h2", {}, "Edit"));
  if (j.state === "active") edit.append(h("div", { class: "muted" }, "Active jobs cannot be edited."));
  else {
    const data = h("textarea", { "data-testid": "edit-data", "data-keep": `edit-data:${queue}:${id}` }); data.value = pretty(j.data);
    const prio = h("input", { type: "number", class: "priority", value: j.priority, "aria-label": "Priority", "data-keep": `edit-priority:${queue}:${id}` });
    edit.append(data, h("div", { class: "row end", style: "margin-top:8px" }, "Priority", prio,
      h("button", { class: "primary", onclick: async () => {
        let parsed;
        try { parsed = JSON.parse(data.value); } catch (_) { toast("Data is not valid JSON", true); return; }
        await act("Save", `/queues/${q}/jobs/${enc(id)}`, { data: parsed, opts: { priority: Number(prio.value) || 0 } }, "PATCH"); submitted(data, prio); reload();
      } }, "Save")));
  }
  show(
    h("div", { class: "spread" },
      h("div", {}, h("div", { class: "muted" }, h("a", { href: "#/" }, "Queues"), " / ", h("a", { href: `#/queue/${q}` }, queue), " /"),
        h("h1", { class: "mono", "data-testid": "job-title" }, j.id), h("div", { class: "row" }, stateBadge(j.state), h("span", { class: "muted" }, j.name))),
      jobActions(queue, j, reload)),
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("h2", {}, "Details"), h("dl", { class: "kv" },
        h("dt", {}, "Attempts"), h("dd", {}, `${j.attemptsMade} of ${j.opts.attempts}`),
        h("dt", {}, "Priority"), h("dd", {}, j.priority),
        h("dt", {}, "Progress"), h("dd", {}, h("div", { class: "progress", title: j.progress + "%" }, h("span", { style: `width:${j.progress}%` }))),
        h("dt", {}, "Group"), h("dd", {}, j.groupId || "—"),
        h("dt", {}, "Tags"), h("dd", {}, j.tags && j.tags.length ? j.tags.map((t) => h("span", { class: "badge" }, t)) : "—"),
        h("dt", {}, "Error"), h("dd", { class: j.failedReason ? "mono" : null, "data-testid": "job-error" }, j.failedReason || "—"),
        h("dt", {}, "Flow parent"), h("dd", {}, j.parentId ? h("a", { href: `#/job/${enc(j.parentQueueName)}/${enc(j.parentId)}` }, j.parentId) : "—"),
        h("dt", {}, "Timeline"), h("dd", {}, timeline))),
      h("div", { class: "panel" }, h("h2", {}, "Data"), h("pre", { "data-testid": "job-data" }, pretty(j.data)),
        h("h2", { style: "margin-top:12px" }, "Result"), h("pre", {}, pretty(j.returnvalue)))),
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("h2", {}, "Children (depends on)"), kids.data.length
        ? h("ul", { class: "tree" }, kids.data.map((k) => h("li", {}, stateBadge(k.state), " ", h("a", { class: "mono", href: `#/job/${enc(k.queueName)}/${enc(k.id)}` }, k.id), " ", h("span", { class: "muted" }, k.name))))
        : h("div", { class: "empty" }, "None.")),
      edit),
    logsPanel(logs),
    h("div", { class: "panel" }, h("h2", {}, "Options"), h("pre", {}, pretty(j.opts))));
  state.refresh = { queue, fn: () => jobView(queue, id) };
}

function logsPanel(logs) {
  const total = logs.meta.total;
  const panel = h("div", { class: "panel", "data-testid": "job-logs" },
    h("h2", {}, "Logs", total > logs.data.length ? h("span", { class: "muted" }, ` (first ${logs.data.length} of ${total})`) : null));
  if (!logs.data.length) {
    panel.append(h("div", { class: "empty" }, "No log lines."));
    return panel;
  }
  panel.append(tableWrap(h("table", { class: "logs" }, h("tbody", {}, logs.data.map((l) => h("tr", { "data-testid": "log-line" },
    h("td", { class: "muted nowrap" }, fmtTime(l.timestamp)),
    h("td", { class: "nowrap" }, h("span", { class: "badge level " + l.level }, l.level)),
    h("td", { class: "mono" }, l.message)))))));
  return panel;
}

async function searchView(query) {
  const [byId, queues] = await Promise.all([api(`/search?q=${enc(query)}&type=job`), api(`/search?q=${enc(query)}&type=queue`)]);
  const all = await api("/queues");
  const results = h("div", { "data-testid": "payload-results" }, loading("Searching…"));
  const picker = h("select", {}, all.data.map((q) => h("option", { value: q.name }, q.name)));
  const runPayload = async () => {
    if (!picker.value) return;
    const found = await api(`/search?q=${enc(query)}&type=payload&queue=${enc(picker.value)}`);
    results.replaceChildren(found.data.length
      ? tableWrap(h("table", {}, h("tbody", {}, found.data.map((j) => h("tr", {}, h("td", { class: "mono nowrap-cell" }, h("a", { href: `#/job/${enc(j.queueName)}/${enc(j.id)}` }, j.id)), h("td", {}, stateBadge(j.state)), h("td", { class: "mono muted" }, JSON.stringify(j.data).slice(0, 120)))))))
      : h("div", { class: "empty" }, "No job's data contains that text."));
  };
  picker.addEventListener("change", runPayload);
  show(h("h1", {}, "Search: ", query),
    h("div", { class: "panel" }, h("h2", {}, "Job id"), byId.data
      ? h("a", { class: "mono", href: `#/job/${enc(byId.data.queueName)}/${enc(byId.data.id)}`, "data-testid": "id-result" }, byId.data.id, " in ", byId.data.queueName)
      : h("div", { class: "muted" }, "No job has that id.")),
    h("div", { class: "panel" }, h("h2", {}, "Queues"), queues.data.length
      ? h("div", { class: "row" }, queues.data.map((q) => h("a", { class: "badge", href: `#/queue/${enc(q.name)}` }, q.name)))
      : h("div", { class: "muted" }, "No queue name contains that.")),
    h("div", { class: "panel" }, h("div", { class: "spread" }, h("h2", {}, "Payload text"), h("div", { class: "inline-form" }, "in queue", picker)), results));
  state.refresh = null;
  runPayload();
}

// ----- routing ------------------------------------------------------------------------

function loading(text) { return h("div", { class: "loading", role: "status", "data-testid": "loading" }, text || "Loading…"); }

// `navigating`: a new view (hash change, sign-in, first load) shows a loading state until
// its data is in; a refresh after an action or an event keeps the current view meanwhile.
async function route(navigating) {
  if (navigating === true) { state.refresh = null; show(loading()); }
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "queue" && parts[1]) await queueView(parts[1], params);
    else if (parts[0] === "job" && parts[2]) await jobView(parts[1], parts[2]);
    else if (parts[0] === "search" && params.get("q")) await searchView(params.get("q"));
    else await overview();
  } catch (e) {
    state.refresh = null;
    if (e.status === 401) show(h("div", { class: "panel empty", "data-testid": "auth-needed" }, "Sign in with a token to see this server. ",
      h("button", { class: "primary", onclick: () => askToken(state.token ? "Enter a valid token." : NEED_TOKEN) }, "Enter a token")));
    else show(h("div", { class: "panel" }, h("h2", {}, "Could not load this view"), h("p", { class: "muted" }, e.message), h("a", { href: "#/" }, "Back to queues")));
  }
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem("hopper-theme", theme);
}

async function start() {
  applyTheme(localStorage.getItem("hopper-theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  document.getElementById("theme").addEventListener("click", () => applyTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));
  document.getElementById("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = document.getElementById("search").value.trim();
    if (q) location.hash = "#/search?q=" + enc(q);
  });
  try { state.config = (await api("/config")).data; } catch (_) { /* keep defaults */ }
  document.body.classList.toggle("readonly", state.config.readOnly);
  document.getElementById("ro-banner").hidden = !state.config.readOnly;
  const signin = document.getElementById("signin");
  signin.hidden = !state.config.authRequired;
  signin.addEventListener("click", () => askToken("Enter the server's bearer token."));
  if (state.config.authRequired && !state.token) askToken(NEED_TOKEN);
  window.addEventListener("hashchange", () => route(true));
  if (state.config.authRequired && !state.token) setLive(false, "signed out");
  else connectEvents();
  route(true);
}

start();
