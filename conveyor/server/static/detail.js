// The document detail view: a dialog over the page, opened by clicking a row (or by
// #doc=<id> in the address). Data from GET /documents/{id}/detail.
import { stageClass } from "./charts.js";
import {
  $, ApiError, Unauthorized, api, apiRaw, bytes, el, place, say, seconds, stateBadge, when,
} from "./lib.js";

const PREVIEW_BYTES = 64 * 1024;

const view = { id: null, deleted: null, outcome: null, onChange: () => {} };

export function setup(onChange) {
  view.onChange = onChange;
  const dialog = $("detail");
  $("detail-close").addEventListener("click", () => close());
  dialog.addEventListener("close", () => {
    view.id = null;
    if (location.hash.startsWith("#doc=")) history.replaceState(null, "", location.pathname);
  });
  dialog.addEventListener("click", (event) => { if (event.target === dialog) close(); });
  window.addEventListener("hashchange", fromHash);
  fromHash();
}

function fromHash() {
  const match = location.hash.match(/^#doc=(.+)$/);
  if (match) open(decodeURIComponent(match[1]));
  else if (view.id) close();
}

export function show(id) {
  location.hash = `doc=${encodeURIComponent(id)}`;  // hashchange opens it
}

export function close() {
  const dialog = $("detail");
  if (dialog.open) dialog.close();
}

export function isOpen(id) {
  return view.id === id && $("detail").open;
}

export async function open(id) {
  const dialog = $("detail");
  view.id = id;
  $("detail-title").textContent = "loading…";
  $("detail-state").replaceChildren();
  $("detail-body").replaceChildren(el("p", { class: "empty" }, "loading…"));
  $("detail-actions").replaceChildren();
  if (!dialog.open) dialog.showModal();
  await reload();
}

export async function reload() {
  const id = view.id;
  if (!id) return;
  let detail;
  try {
    detail = await api(`/documents/${encodeURIComponent(id)}/detail`);
  } catch (error) {
    if (error instanceof Unauthorized) { close(); return; }
    if (error instanceof ApiError && error.status === 404 && view.deleted === id) {
      $("detail-actions").replaceChildren();
      $("detail-state").replaceChildren(el("span", { class: "state" }, "deleted"));
      $("detail-body").replaceChildren(el("p", { id: "detail-gone" }, "Deleted: its chunks left the index and the catalog no longer lists it."));
      return;
    }
    $("detail-title").textContent = id;
    $("detail-body").replaceChildren(el("p", { class: "error-text" }, `cannot show it: ${error.message}`));
    return;
  }
  if (view.id !== id) return;
  render(detail);
}

function render(detail) {
  const doc = detail.document;
  $("detail-title").textContent = doc.name;
  $("detail-title").title = doc.source;
  $("detail-state").replaceChildren(stateBadge(doc.state), doc.stage ? el("span", { class: "muted" }, ` at ${doc.stage}`) : "");
  $("detail-actions").replaceChildren(...actions(detail));
  $("detail-body").replaceChildren(...[
    doc.error ? section("Error", errorBlock(doc)) : null,
    section("Document", facts(doc, detail)),
    section("History", historyList(detail.history),
      el("p", { class: "note" }, "Every move between states, written with the move.")),
    section("Versions", versionTable(detail.versions || [])),
    section("Time per stage", timingBars(doc.timings)),
    section(`Chunks: ${detail.stored_chunks} stored`, chunkList(detail)),
    section("Artifacts", artifactList(detail.artifacts)),
    section("Result manifest", manifestBlock(detail)),
  ].filter(Boolean));
}

function section(title, ...content) {
  return el("section", { class: "detail-section", "data-section": title.split(":")[0].toLowerCase() },
    el("h3", {}, title), ...content);
}

function errorBlock(doc) {
  return el("div", { class: "error-block" },
    el("p", {}, el("b", {}, doc.error_kind || "error"), ` after ${doc.attempts} attempt${doc.attempts === 1 ? "" : "s"}`),
    el("pre", { class: "wrap error-text" }, doc.error));
}

function facts(doc, detail) {
  const rows = [
    ["id", doc.id], ["collection", doc.collection], ["source", doc.source], ["run", doc.run],
    ["kind", [doc.kind, doc.mime].filter(Boolean).join(" · ")], ["size", bytes(doc.size)],
    ["chunks", `${doc.chunks} (${detail.stored_chunks} in the vector store)`], ["model", doc.model],
    ["attempts", doc.attempts], ["created", when(doc.created_at)], ["updated", when(doc.updated_at)],
  ];
  for (const [k, v] of Object.entries(doc.details || {})) {
    if (Array.isArray(v) && v.length && v.every((x) => typeof x === "string")) rows.push([k, v.join(", ")]);  // keywords, topics
    if (k === "speakers" && Array.isArray(v) && v.length) {  // a recording's: who spoke, how long
      rows.push([k, v.map((s) => `${s.speaker} ${Math.round(s.seconds)} s`).join(", ")]);
    }
    if (k === "artifacts" || typeof v === "object") continue;
    rows.push([k, v]);
  }
  for (const [k, v] of Object.entries(doc.metadata || {})) rows.push([`metadata.${k}`, JSON.stringify(v)]);
  return el("dl", { class: "facts" }, rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [el("dt", {}, k), el("dd", { title: String(v) }, String(v))]));
}

function historyList(history) {
  return el("ol", { class: "history" }, history.map((h) =>
    el("li", { "data-to": h.to_state || "", "data-attempt": h.attempt ?? "" },
      el("time", { dateTime: h.at }, when(h.at)), " ", h.what)));
}

// one row per run that settled the document: what it read (hash), made (chunks) and how it ended
function versionTable(versions) {
  if (!versions.length) return el("p", { class: "empty" }, "No run has settled it yet.");
  const cell = (text, title) => el("td", { title: title || String(text ?? "") }, text ?? "–");
  return el("table", { class: "versions" },
    el("thead", {}, el("tr", {}, ["#", "when", "run", "outcome", "hash", "chunks", "pages"].map((h) => el("th", {}, h)))),
    el("tbody", {}, versions.slice().reverse().map((v) => el("tr", { "data-outcome": v.outcome },
      cell(v.version), cell(when(v.at)), cell(v.run),
      cell(v.outcome, v.reason || v.outcome), cell(v.content_hash ? v.content_hash.replace(/^sha256:/, "").slice(0, 12) : null, v.content_hash),
      cell(v.chunks), cell(v.pages)))));
}

function timingBars(timings) {
  const stages = Object.keys(timings);
  if (!stages.length) return el("p", { class: "empty" }, "No timings: they are recorded when a document is merged.");
  const max = Math.max(...Object.values(timings), 1e-6);
  const total = Object.values(timings).reduce((a, b) => a + b, 0);
  return el("table", { class: "timings" },
    el("tbody", {}, stages.map((s) => el("tr", { "data-stage": s },
      el("th", {}, s),
      el("td", { class: "bar-cell" }, el("span", { class: `bar ${stageClass(s, stages)}`, style: `width:${(100 * timings[s]) / max}%` })),
      el("td", { class: "num" }, seconds(timings[s])))),
      el("tr", { class: "total" }, el("th", {}, "total"), el("td", {}), el("td", { class: "num" }, seconds(total)))));
}

function chunkList(detail) {
  if (!detail.first_chunks.length) return el("p", { class: "empty" }, "No chunks in the vector store.");
  const more = detail.stored_chunks - detail.first_chunks.length;
  return el("div", {},
    el("ol", { class: "chunks" }, detail.first_chunks.map((c) =>
      el("li", { "data-index": c.index }, el("span", { class: "where" }, place(c)), el("p", { class: "chunk-text" }, c.text)))),
    more > 0 ? el("p", { class: "note" }, `and ${more} more`) : null);
}

function artifactList(artifacts) {
  if (!artifacts.length) return el("p", { class: "empty" }, "None: this format writes no artifacts.");
  const preview = el("pre", { class: "wrap artifact-preview", hidden: true });
  const list = el("ul", { class: "artifacts" }, artifacts.map((a) => {
    const button = el("button", { type: "button", class: "small", "data-artifact": a.name }, "show");
    button.addEventListener("click", () => showArtifact(a, preview));
    const save = el("button", { type: "button", class: "small link" }, "download");
    save.addEventListener("click", () => download(a));
    return el("li", {}, el("code", {}, a.name), ` ${bytes(a.size)} `, button, save);
  }));
  return el("div", {}, list, preview);
}

async function showArtifact(artifact, preview) {
  preview.hidden = false;
  preview.textContent = "loading…";
  try {
    const response = await apiRaw(artifact.url);
    const type = response.headers.get("content-type") || "";
    if (type.startsWith("image/")) {
      const url = URL.createObjectURL(await response.blob());
      preview.replaceChildren(el("img", { src: url, alt: artifact.name, class: "artifact-image" }));
      return;
    }
    const text = await response.text();
    preview.textContent = text.length > PREVIEW_BYTES ? `${text.slice(0, PREVIEW_BYTES)}\n… (${bytes(text.length)} in all)` : text;
  } catch (error) {
    if (!(error instanceof Unauthorized)) preview.textContent = `cannot load it: ${error.message}`;
  }
}

async function download(artifact) {
  try {
    const blob = await (await apiRaw(artifact.url)).blob();
    const link = el("a", { href: URL.createObjectURL(blob), download: artifact.name });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (error) {
    if (!(error instanceof Unauthorized)) say(`download failed: ${error.message}`, "error");
  }
}

function manifestBlock(detail) {
  if (!detail.manifest) return el("p", { class: "empty" }, "No manifest yet (written when the document is merged, skipped or fails).");
  return el("div", {}, el("p", { class: "note" }, el("code", {}, detail.manifest_key)),
    el("pre", { class: "wrap manifest" }, JSON.stringify(detail.manifest, null, 2)));
}

function actions(detail) {
  const doc = detail.document;
  const out = [];
  if (detail.dead_letter) {
    const redrive = el("button", { type: "button", id: "detail-redrive" }, "redrive");
    redrive.addEventListener("click", () => act(redrive, "redrive",
      () => api(`/dead-letters/${encodeURIComponent(detail.dead_letter)}/redrive`, { method: "POST" }),
      (r) => `${doc.name}: redriven (${r.redriven} job back on the queue)`));
    out.push(redrive);
  }
  const remove = el("button", { type: "button", id: "detail-delete", class: "danger" }, "delete");
  remove.addEventListener("click", () => {
    if (remove.dataset.armed !== "yes") {  // a second click confirms
      remove.dataset.armed = "yes";
      remove.textContent = "delete: sure?";
      return;
    }
    act(remove, "delete", async () => {
      const accepted = await api(`/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
      view.deleted = doc.id;
      return accepted;
    }, () => `${doc.name}: deletion accepted; its chunks leave the index when the compactor merges it`);
  });
  out.push(remove);
  // what the last action said outlives the view's live re-renders
  const said = view.outcome && view.outcome.id === doc.id ? view.outcome : null;
  out.push(el("span", { id: "detail-outcome", class: said ? `outcome ${said.cls}` : "outcome", role: "status" },
    said ? said.text : ""));
  return out;
}

async function act(button, what, call, success) {
  button.disabled = true;
  const id = view.id;
  const show = (text, cls) => {  // the span now on the page: the view may have re-rendered
    view.outcome = { id, text, cls };
    const outcome = $("detail-outcome");
    if (outcome) {
      outcome.className = `outcome ${cls}`;
      outcome.textContent = text;
    }
  };
  show(`${what}…`, "");
  try {
    const result = await call();
    show(success(result), "ok");
    say(success(result), "ok");
    view.onChange();
    // look again as the action takes effect, only while this document is still the one shown
    // (another opened meanwhile keeps its view: an artifact shown there stays shown)
    for (const ms of [800, 2500, 6000]) setTimeout(() => { if (view.id === id) reload(); }, ms);
  } catch (error) {
    if (error instanceof Unauthorized) return;
    const text = error instanceof ApiError && error.status === 405 && what === "delete"
      ? `delete failed: ${error.message}: this server cannot delete documents yet`
      : `${what} failed: ${error.message}`;
    show(text, "bad");
    button.disabled = false;
  }
}
