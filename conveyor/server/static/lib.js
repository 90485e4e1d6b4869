// What every part of the status page shares: building elements, calling the API with
// the key, the message line, and formatting. Everything user-supplied is shown with
// textContent, never as HTML.

export const KEY_STORE = "conveyor.apiKey";

export const app = {
  key: localStorage.getItem(KEY_STORE) || "",
  needKey: false,
  onUnauthorized: () => {},
};

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("data-") || name.startsWith("aria-") || name === "role") node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function say(text, kind = "info") {
  const box = $("message");
  box.textContent = text;
  box.className = `message message-${kind}`;
  box.hidden = !text;
}

export class Unauthorized extends Error {}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function call(path, options) {
  const headers = { ...(options.headers || {}) };
  if (app.key) headers["x-api-key"] = app.key;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    app.onUnauthorized(body?.error?.message || "an API key is needed");
    throw new Unauthorized();
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    const reason = body?.error?.message || response.statusText || "error";
    throw new ApiError(`${reason} (HTTP ${response.status})`, response.status);
  }
  app.needKey = false;
  return response;
}

// JSON from the API, with the key; Unauthorized (the page asks for a key) or ApiError.
export async function api(path, options = {}) {
  const response = await call(path, options);
  if (response.status === 204) return null;
  try { return await response.json(); } catch (_) { return null; }
}

// The raw response (artifacts: bytes of any type).
export const apiRaw = (path, options = {}) => call(path, options);

export function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function when(iso) {
  return new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
}

export function seconds(s) {
  if (s >= 100) return `${Math.round(s)} s`;
  if (s >= 1) return `${s.toFixed(1)} s`;
  if (s >= 0.001) return `${Math.round(s * 1000)} ms`;
  return s > 0 ? "<1 ms" : "0";
}

export function clock(s) {
  const m = Math.floor(s / 60);
  const rest = Math.floor(s % 60).toString().padStart(2, "0");
  return m >= 60 ? `${Math.floor(m / 60)}:${(m % 60).toString().padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// Where a hit or chunk sits in its document: a page, a time range, or its index.
export function place(item) {
  const parts = [];
  if (item.page !== null && item.page !== undefined) parts.push(`page ${item.page}`);
  if (item.start_s !== null && item.start_s !== undefined) {
    parts.push(`${clock(item.start_s)}–${clock(item.end_s ?? item.start_s)}`);
  }
  if (item.wall_clock) parts.push(item.wall_clock);  // a recorder said when it started
  const index = item.chunk_index ?? item.index;
  if (index !== undefined) parts.push(`chunk ${index}`);
  return parts.join(" · ");
}

// States as people read them (as the CLI words them): a skipped document is
// unchanged since it was last merged, and still searchable.
const WORDS = { skipped: "unchanged" };
export const word = (state) => WORDS[state] || state;

export function stateBadge(state) {
  return el("span", { class: `state state-${state}`, title: state === "skipped" ? "unchanged since it was last merged: still searchable" : undefined }, word(state));
}
