// The conveyor status page: no build step, no dependencies.
// Data from GET /status; live updates from GET /events (server-sent events, with a
// short-lived token because EventSource cannot send headers); polling when the
// stream is down. Everything user-supplied is shown with textContent, never as HTML.
"use strict";

const KEY_STORE = "conveyor.apiKey";
const POLL_MS = 3000;
const REFRESH_MS = 10000;
const MAX_ROWS = 25;

const app = {
  key: localStorage.getItem(KEY_STORE) || "",
  stream: null,
  pollTimer: null,
  refreshTimer: null,
  soon: null,
  retryMs: 2000,
  needKey: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function say(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = `message message-${kind}`;
  box.hidden = !text;
}

function setMode(mode) {
  const label = { live: "live", polling: "polling", offline: "offline" }[mode];
  $("mode").textContent = label;
  $("mode").className = `mode mode-${mode}`;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (app.key) headers["x-api-key"] = app.key;
  const response = await fetch(path, { ...options, headers });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    askForKey(body?.error?.message || "an API key is needed");
    throw new Unauthorized();
  }
  if (!response.ok) throw new Error(body?.error?.message || `${response.status} ${response.statusText}`);
  app.needKey = false;
  return body;
}

function askForKey(reason) {
  app.needKey = true;
  $("key-form").classList.add("attention");
  say(`${reason} — enter it above (it is kept in this browser only).`, "warn");
  setMode("offline");
  stopStream();
}

// -- rendering -------------------------------------------------------------------

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return new Date(iso).toLocaleString();
}

function renderQueue(queue, documents) {
  for (const name of ["visible", "in_flight", "delayed", "dead"]) $(`q-${name}`).textContent = queue[name];
  $("q-dead").parentElement.classList.toggle("nonzero", queue.dead > 0);
  const counts = $("doc-counts");
  counts.replaceChildren(
    ...Object.entries(documents).map(([state, n]) =>
      el("span", { class: `count state-${state}`, title: state }, `${state} ${n}`)),
  );
}

function stateBadge(state) {
  return el("span", { class: `state state-${state}` }, state);
}

function documentRow(doc) {
  const when = typeof doc.updated_at === "number" ? new Date(doc.updated_at * 1000).toISOString() : doc.updated_at;
  return el("tr", { "data-id": doc.id, "data-name": doc.name, "data-state": doc.state },
    el("td", { class: "name", title: doc.error || doc.name }, doc.name),
    el("td", {}, doc.collection),
    el("td", { class: "state-cell" }, stateBadge(doc.state)),
    el("td", { class: "stage" }, doc.state === "failed" ? (doc.error || "") : (doc.stage || "")),
    el("td", { class: "num" }, doc.chunks ?? 0),
    el("td", { class: "when", "data-when": when }, ago(when)),
  );
}

function renderDocuments(docs) {
  $("documents").tBodies[0].replaceChildren(...docs.map(documentRow));
}

function upsertDocument(doc) {
  const body = $("documents").tBodies[0];
  const row = documentRow(doc);
  const old = body.querySelector(`tr[data-id="${CSS.escape(doc.id)}"]`);
  if (old) old.remove();
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
}

function renderWorkers(workers) {
  $("workers").tBodies[0].replaceChildren(...workers.map((w) => {
    const state = w.stale ? "stale" : w.state;
    return el("tr", { "data-state": state },
      el("td", { title: `${w.host} pid ${w.pid}, ${w.concurrency} slots` }, w.id),
      el("td", {}, el("span", { class: `state worker-${state}` }, state)),
      el("td", { class: "num" }, `${w.heartbeat_age.toFixed(1)} s`),
      el("td", { class: "num" }, w.in_flight),
      el("td", { class: "num" }, w.jobs_done),
      el("td", { class: "num" }, w.jobs_failed),
    );
  }));
  $("no-workers").hidden = workers.length > 0;
}

function renderFailures(letters) {
  $("failures").tBodies[0].replaceChildren(...letters.map((d) => {
    const button = el("button", { type: "button", class: "redrive" }, "redrive");
    button.addEventListener("click", () => redrive(d.job_id, button));
    return el("tr", { "data-job": d.job_id },
      el("td", { title: d.source || "" }, d.name || d.job_id),
      el("td", { class: "reason" }, d.error || "no reason recorded"),
      el("td", { class: "num" }, d.attempts),
      el("td", {}, ago(d.last_seen)),
      el("td", {}, button),
    );
  }));
  $("no-failures").hidden = letters.length > 0;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderChart(points) {
  const chart = $("chart");
  const width = 600, height = 140, left = 30, bottom = 20, top = 10;
  const max = Math.max(1, ...points.map((p) => p.done + p.failed));
  const slot = (width - left) / Math.max(1, points.length);
  const scale = (height - bottom - top) / max;
  const nodes = [
    svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }),
    svg("text", { x: left - 4, y: top + 8, class: "tick", "text-anchor": "end" }, String(max)),
    svg("text", { x: left - 4, y: height - bottom, class: "tick", "text-anchor": "end" }, "0"),
  ];
  points.forEach((p, i) => {
    const x = left + i * slot + 2;
    const w = Math.max(1, slot - 4);
    const doneH = p.done * scale, failedH = p.failed * scale;
    const minute = new Date(p.minute);
    const label = `${minute.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ` +
      `${p.done} done (${p.chunks} chunks), ${p.failed} failed`;
    const bar = svg("g", {});
    bar.append(svg("title", {}, label));
    bar.append(svg("rect", { x, y: height - bottom - doneH, width: w, height: doneH, class: "bar-done" }));
    bar.append(svg("rect", { x, y: height - bottom - doneH - failedH, width: w, height: failedH, class: "bar-failed" }));
    nodes.push(bar);
    if (i % 5 === 0 || i === points.length - 1) {
      const back = points.length - 1 - i;
      nodes.push(svg("text", { x: x + w / 2, y: height - 5, class: "tick", "text-anchor": "middle" },
        back === 0 ? "now" : `-${back}m`));
    }
  });
  chart.replaceChildren(...nodes);
}

function render(overview) {
  renderQueue(overview.queue, overview.documents);
  renderWorkers(overview.workers);
  renderChart(overview.throughput);
  renderDocuments(overview.recent);
  renderFailures(overview.failures);
}

// -- data ------------------------------------------------------------------------

async function refresh() {
  try {
    render(await api("/status"));
    if (!app.needKey && $("message").classList.contains("message-warn")) say("");
    return true;
  } catch (error) {
    if (!(error instanceof Unauthorized)) { say(`cannot reach the API: ${error.message}`, "error"); setMode("offline"); }
    return false;
  }
}

function refreshSoon(ms = 1000) {
  if (app.soon) return;
  app.soon = setTimeout(() => { app.soon = null; refresh(); }, ms);
}

function startPolling() {
  if (app.pollTimer) return;
  app.pollTimer = setInterval(refresh, POLL_MS);
  if (!app.needKey) setMode("polling");
}

function stopPolling() {
  clearInterval(app.pollTimer);
  app.pollTimer = null;
}

function stopStream() {
  if (app.stream) app.stream.close();
  app.stream = null;
}

async function connect() {
  stopStream();
  if (app.needKey || typeof EventSource === "undefined") { startPolling(); return; }
  let token;
  try {
    token = (await api("/events/token", { method: "POST" })).token;
  } catch (error) {
    if (!(error instanceof Unauthorized)) { startPolling(); setTimeout(connect, app.retryMs); }
    return;
  }
  const stream = new EventSource(`/events?token=${encodeURIComponent(token)}`);
  app.stream = stream;
  stream.onopen = () => {
    app.retryMs = 2000;
    stopPolling();
    setMode("live");
    refresh();
  };
  stream.addEventListener("document", (event) => {
    upsertDocument(JSON.parse(event.data));
    refreshSoon(1500);  // workers, throughput and failures follow
  });
  stream.addEventListener("queue", (event) => {
    const data = JSON.parse(event.data);
    renderQueue(data.queue, data.documents);
  });
  stream.onerror = () => {
    // the token is checked when a stream opens: after a drop, get a fresh one
    if (app.stream !== stream) return;
    stopStream();
    startPolling();
    app.retryMs = Math.min(app.retryMs * 2, 30000);
    setTimeout(connect, app.retryMs);
  };
}

async function redrive(jobId, button) {
  button.disabled = true;
  try {
    const result = await api(`/dead-letters/${encodeURIComponent(jobId)}/redrive`, { method: "POST" });
    say(`redrove ${result.redriven} job; a worker picks it up next`, "info");
  } catch (error) {
    if (!(error instanceof Unauthorized)) say(`redrive failed: ${error.message}`, "error");
    button.disabled = false;
  }
  refresh();
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  const collection = $("collection").value.trim();
  if (collection) form.append("collection", collection);
  $("upload-button").disabled = true;
  say(`uploading ${file.name}…`);
  try {
    const result = await api("/documents", { method: "POST", body: form });
    say(result.duplicate
      ? `${result.name} is already here (${result.state}): document ${result.id}`
      : `${result.name} accepted as a ${result.kind} file: document ${result.id}`, "ok");
    $("upload-form").reset();
    refresh();
  } catch (error) {
    if (!(error instanceof Unauthorized)) say(`upload failed: ${error.message}`, "error");
  } finally {
    $("upload-button").disabled = false;
  }
}

async function useKey(event) {
  event.preventDefault();
  app.key = $("api-key").value.trim();
  if (app.key) localStorage.setItem(KEY_STORE, app.key);
  else localStorage.removeItem(KEY_STORE);
  $("api-key").value = "";
  showKeyState();
  app.needKey = false;
  $("key-form").classList.remove("attention");
  say("");
  if (await refresh()) connect();
}

function forgetKey() {
  localStorage.removeItem(KEY_STORE);
  app.key = "";
  showKeyState();
  stopStream();
  stopPolling();
  askForKey("the key was forgotten");
}

function tickAges() {
  for (const cell of document.querySelectorAll("td.when")) cell.textContent = ago(cell.dataset.when);
}

function showKeyState() {
  $("api-key").placeholder = app.key ? "key saved in this browser" : "from CONVEYOR_API_KEYS";
}

async function start() {
  showKeyState();
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("upload-form").addEventListener("submit", upload);
  try {
    const health = await (await fetch("/health")).json();
    $("key-form").hidden = !health.auth;
  } catch (_) { /* the first refresh says what is wrong */ }
  if (await refresh()) connect();
  // heartbeat ages and throughput move even when no document does
  app.refreshTimer = setInterval(() => { if (app.stream) refresh(); }, REFRESH_MS);
  setInterval(tickAges, 5000);
}

document.addEventListener("DOMContentLoaded", start);
