// The conveyor status page: no build step, no dependencies.
// Data from GET /status (tiles, workers, throughput, documents, failures), GET /timings
// (the stage chart), GET /documents?state= (a filtered table), GET /search, and the
// detail view (detail.js); live updates from GET /events (server-sent events, with a
// short-lived token because EventSource cannot send headers); polling when the stream
// is down.
import { renderStages, renderThroughput } from "./charts.js";
import * as detail from "./detail.js";
import {
  $, KEY_STORE, Unauthorized, ago, api, app, el, place, say, stateBadge, word,
} from "./lib.js";

const POLL_MS = 3000;
const REFRESH_MS = 10000;
const MAX_ROWS = 50;
const TIMINGS_OF = 40;

const page = {
  stream: null,
  pollTimer: null,
  soon: null,
  timingsSoon: null,
  retryMs: 2000,
  filter: "",
  states: [],
  throughput: [],
  timings: null,
};

function setMode(mode) {
  $("mode").textContent = { live: "live", polling: "polling", offline: "offline" }[mode];
  $("mode").className = `mode mode-${mode}`;
}

app.onUnauthorized = (reason) => {
  app.needKey = true;
  $("key-form").classList.add("attention");
  say(`${reason} — enter it above (it is kept in this browser only).`, "warn");
  setMode("offline");
  stopStream();
};

// -- tiles -------------------------------------------------------------------------

function renderQueue(queue, documents) {
  for (const name of ["visible", "in_flight", "delayed", "dead"]) $(`q-${name}`).textContent = queue[name];
  $("q-dead").parentElement.classList.toggle("nonzero", queue.dead > 0);
  const states = page.states.length ? page.states : Object.keys(documents);
  $("state-tiles").replaceChildren(...states.map((state) => {
    const tile = el("button", {
      type: "button", class: `tile state-tile tile-${state}`, "data-state": state,
      title: `list the ${word(state)} documents`, "aria-pressed": String(page.filter === state),
    }, el("span", { class: "label" }, word(state)), el("span", { class: "value" }, documents[state] ?? 0));
    tile.addEventListener("click", () => setFilter(page.filter === state ? "" : state));
    return tile;
  }));
}

function renderStateOptions() {
  const select = $("state-filter");
  const wanted = ["", ...page.states];
  if ([...select.options].map((o) => o.value).join() === wanted.join()) return;
  select.replaceChildren(...wanted.map((s) => el("option", { value: s }, s ? word(s) : "any")));
  select.value = page.filter;
}

// -- tables ------------------------------------------------------------------------

function openable(row, id) {
  row.tabIndex = 0;
  row.classList.add("openable");
  row.addEventListener("click", (event) => { if (!event.target.closest("button")) detail.show(id); });
  row.addEventListener("keydown", (event) => { if (event.key === "Enter") detail.show(id); });
  return row;
}

function cell(cls, text, title) {
  return el("td", { class: cls, title: title ?? (text === "" ? undefined : String(text)) }, text);
}

function documentRow(doc) {
  // the event stream may carry unix seconds, the API ISO 8601
  const updated = typeof doc.updated_at === "number" ? new Date(doc.updated_at * 1000).toISOString() : doc.updated_at;
  const reason = doc.error || "";
  const kind = doc.error_kind ? el("span", { class: "kind" }, `${doc.error_kind}: `) : "";
  return openable(el("tr", { "data-id": doc.id, "data-name": doc.name, "data-state": doc.state },
    cell("c-name", doc.name, doc.source || doc.name),
    cell("c-collection opt", doc.collection),
    el("td", { class: "c-state" }, stateBadge(doc.state)),
    cell("c-stage opt", doc.stage || ""),
    el("td", { class: "c-reason reason", title: reason ? `${doc.error_kind || "error"}: ${reason}` : undefined }, kind, reason),
    cell("c-num opt", doc.chunks ?? 0),
    cell("c-num opt", doc.attempts ?? ""),
    el("td", { class: "c-when when", "data-when": updated, title: new Date(updated).toLocaleString() }, ago(updated)),
  ), doc.id);
}

// Rows for items, keeping the rows whose item has not changed: a refresh does not
// redraw the table under the pointer (a click or a hover survives it).
function keyed(body, items, key, build) {
  const old = new Map([...body.rows].map((row) => [row.dataset.key, row]));
  const rows = items.map((item) => {
    const sig = JSON.stringify(item);
    const row = old.get(key(item));
    if (row && row.dataset.sig === sig) return row;
    const fresh = build(item);
    fresh.dataset.key = key(item);
    fresh.dataset.sig = sig;
    return fresh;
  });
  if (rows.length !== body.rows.length || rows.some((row, i) => body.rows[i] !== row)) body.replaceChildren(...rows);
}

function renderDocuments(docs) {
  keyed($("documents").tBodies[0], docs.slice(0, MAX_ROWS), (d) => d.id, documentRow);
  $("no-documents").hidden = docs.length > 0;
}

function upsertDocument(doc) {
  const body = $("documents").tBodies[0];
  const old = body.querySelector(`tr[data-id="${CSS.escape(doc.id)}"]`);
  if (old) old.remove();
  if (page.filter && doc.state !== page.filter) return;
  const row = documentRow(doc);
  row.dataset.key = doc.id;  // the next refresh draws it again from /status
  body.prepend(row);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  $("no-documents").hidden = true;
}

function renderWorkers(workers) {
  $("workers").tBodies[0].replaceChildren(...workers.map((w) => {
    const state = w.stale ? "stale" : w.state;
    return el("tr", { "data-state": state },
      cell("c-name", w.id, `${w.host} pid ${w.pid}, ${w.concurrency} slots`),
      el("td", { class: "c-state" }, el("span", { class: `state worker-${state}` }, state)),
      cell("c-num c-beat", `${w.heartbeat_age.toFixed(1)} s`),
      cell("c-num opt", w.in_flight),
      cell("c-num", w.jobs_done),
      cell("c-num", w.jobs_failed),
    );
  }));
  $("no-workers").hidden = workers.length > 0;
}

function renderFailures(letters) {
  keyed($("failures").tBodies[0], letters, (d) => d.job_id, (d) => {
    const button = el("button", { type: "button", class: "small redrive" }, "redrive");
    button.addEventListener("click", () => redrive(d.job_id, button));
    const row = el("tr", { "data-job": d.job_id, "data-name": d.name || "" },
      cell("c-name", d.name || d.job_id, d.source || d.job_id),
      cell("c-reason reason", d.error || "no reason recorded"),
      cell("c-num opt", d.attempts),
      el("td", { class: "c-when when opt", "data-when": d.last_seen, title: new Date(d.last_seen).toLocaleString() }, ago(d.last_seen)),
      el("td", { class: "c-action" }, button),
    );
    return d.document_id ? openable(row, d.document_id) : row;
  });
  $("no-failures").hidden = letters.length > 0;
}

// -- charts ------------------------------------------------------------------------

function drawCharts() {
  renderThroughput($("chart"), $("throughput-legend"), page.throughput);
  if (page.timings) renderStages($("stages-chart"), $("stages-legend"), page.timings, (id) => detail.show(id));
}

async function refreshTimings() {
  try {
    page.timings = await api(`/timings?limit=${TIMINGS_OF}`);
    drawCharts();
  } catch (error) {
    if (!(error instanceof Unauthorized)) $("stages-legend").textContent = `cannot load timings: ${error.message}`;
  }
}

function timingsSoon() {
  if (page.timingsSoon) return;
  page.timingsSoon = setTimeout(() => { page.timingsSoon = null; refreshTimings(); }, 2000);
}

// -- data --------------------------------------------------------------------------

async function refresh() {
  try {
    const overview = await api("/status");
    page.states = overview.states;
    page.throughput = overview.throughput;
    renderStateOptions();
    renderQueue(overview.queue, overview.documents);
    renderWorkers(overview.workers);
    renderFailures(overview.failures);
    renderDocuments(page.filter ? await api(`/documents?state=${page.filter}&limit=${MAX_ROWS}`) : overview.recent);
    drawCharts();
    if (!app.needKey && $("message").classList.contains("message-warn")) say("");
    return true;
  } catch (error) {
    if (!(error instanceof Unauthorized)) { say(`cannot reach the API: ${error.message}`, "error"); setMode("offline"); }
    return false;
  }
}

function refreshSoon(ms = 1000) {
  if (page.soon) return;
  page.soon = setTimeout(() => { page.soon = null; refresh(); }, ms);
}

function setFilter(state) {
  page.filter = state;
  $("state-filter").value = state;
  $("documents-caption").textContent = state ? `${word(state)}, most recently changed` : "most recently changed";
  for (const tile of document.querySelectorAll(".state-tile")) {
    tile.setAttribute("aria-pressed", String(tile.dataset.state === state));
  }
  refresh();
}

function startPolling() {
  if (page.pollTimer) return;
  page.pollTimer = setInterval(refresh, POLL_MS);
  if (!app.needKey) setMode("polling");
}

function stopPolling() {
  clearInterval(page.pollTimer);
  page.pollTimer = null;
}

function stopStream() {
  if (page.stream) page.stream.close();
  page.stream = null;
}

async function connect() {
  stopStream();
  if (app.needKey || typeof EventSource === "undefined") { startPolling(); return; }
  let token;
  try {
    token = (await api("/events/token", { method: "POST" })).token;
  } catch (error) {
    if (!(error instanceof Unauthorized)) { startPolling(); setTimeout(connect, page.retryMs); }
    return;
  }
  const stream = new EventSource(`/events?token=${encodeURIComponent(token)}`);
  page.stream = stream;
  stream.onopen = () => {
    page.retryMs = 2000;
    stopPolling();
    setMode("live");
    refresh();
  };
  stream.addEventListener("document", (event) => {
    const doc = JSON.parse(event.data);
    upsertDocument(doc);
    if (["done", "skipped", "failed"].includes(doc.state)) timingsSoon();
    if (detail.isOpen(doc.id)) detail.reload();
    refreshSoon(1500);  // workers, throughput and failures follow
  });
  stream.addEventListener("queue", (event) => {
    const data = JSON.parse(event.data);
    renderQueue(data.queue, data.documents);
  });
  stream.onerror = () => {
    // the token is checked when a stream opens: after a drop, get a fresh one
    if (page.stream !== stream) return;
    stopStream();
    startPolling();
    page.retryMs = Math.min(page.retryMs * 2, 30000);
    setTimeout(connect, page.retryMs);
  };
}

// -- actions -----------------------------------------------------------------------

async function redrive(jobId, button) {
  button.disabled = true;
  try {
    const result = await api(`/dead-letters/${encodeURIComponent(jobId)}/redrive`, { method: "POST" });
    say(`redrove ${result.redriven} job${result.redriven === 1 ? "" : "s"}: a worker picks it up next`, "info");
  } catch (error) {
    if (!(error instanceof Unauthorized)) say(`redrive failed: ${error.message}`, "error");
    button.disabled = false;
  }
  refresh();
}

async function search(event) {
  event.preventDefault();
  const q = $("search-query").value.trim();
  if (!q) return;
  const collection = $("search-collection").value.trim();
  const params = new URLSearchParams({ q, k: "8", ...(collection ? { collection } : {}) });
  $("search-button").disabled = true;
  $("search-note").hidden = false;
  $("search-note").textContent = "searching… (the first search loads the model)";
  try {
    const result = await api(`/search?${params}`);
    $("hits").replaceChildren(...result.hits.map((hit) => {
      const name = el("button", { type: "button", class: "link hit-name", title: hit.source }, hit.name);
      name.addEventListener("click", () => detail.show(hit.document_id));
      return el("li", { class: "hit", "data-document": hit.document_id },
        el("div", { class: "hit-head" }, name,
          el("span", { class: "where" }, place(hit)),
          el("span", { class: "score", title: "cosine similarity: 1 is the same meaning" }, `score ${hit.score.toFixed(3)}`)),
        el("p", { class: "hit-text" }, hit.text));
    }));
    $("search-note").textContent = result.hits.length
      ? `${result.hits.length} closest chunks in ${result.collection}`
      : `nothing found in ${result.collection}`;
  } catch (error) {
    if (!(error instanceof Unauthorized)) $("search-note").textContent = `search failed: ${error.message}`;
    $("hits").replaceChildren();
  } finally {
    $("search-button").disabled = false;
  }
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

// -- the key -----------------------------------------------------------------------

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
  if (await refresh()) { refreshTimings(); connect(); detail.reload(); }
}

function forgetKey() {
  localStorage.removeItem(KEY_STORE);
  app.key = "";
  showKeyState();
  stopStream();
  stopPolling();
  app.onUnauthorized("the key was forgotten");
}

function showKeyState() {
  $("api-key").placeholder = app.key ? "key saved in this browser" : "from CONVEYOR_API_KEYS";
}

function tickAges() {
  for (const node of document.querySelectorAll("td.when")) node.textContent = ago(node.dataset.when);
}

async function start() {
  showKeyState();
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("upload-form").addEventListener("submit", upload);
  $("search-form").addEventListener("submit", search);
  $("state-filter").addEventListener("change", (event) => setFilter(event.target.value));
  detail.setup(() => { refresh(); timingsSoon(); });
  let resize = null;
  new ResizeObserver(() => { clearTimeout(resize); resize = setTimeout(drawCharts, 100); }).observe($("chart"));
  try {
    const health = await (await fetch("/health")).json();
    $("key-form").hidden = !health.auth;
  } catch (_) { /* the first refresh says what is wrong */ }
  if (await refresh()) { refreshTimings(); connect(); }
  // heartbeat ages, throughput and timings move even when no document does
  setInterval(() => { if (page.stream) { refresh(); refreshTimings(); } }, REFRESH_MS);
  setInterval(tickAges, 5000);
}

start();
