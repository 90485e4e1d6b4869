// The two charts, drawn as SVG at the size they are shown (so text is 12 px on any
// screen): documents finished per minute, and where the time goes per stage.
import { el, seconds, svg, word } from "./lib.js";

const HEIGHT = 190;
const PAD = { left: 62, right: 10, top: 12, bottom: 34 };
const MAX_BAR = 48;

// 0, a round step, ..., covering max: 3 to 5 ticks.
function ticks(max) {
  if (max <= 0) return [0, 1];
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const out = [];
  for (let v = 0; v < max + step * 0.999; v += step) out.push(+v.toFixed(6));
  return out;
}

function frame(node) {
  const width = Math.max(260, Math.round(node.getBoundingClientRect().width || 600));
  node.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  node.setAttribute("height", HEIGHT);
  return { width, plotW: width - PAD.left - PAD.right, plotH: HEIGHT - PAD.top - PAD.bottom };
}

function yAxis(nodes, top, plotH, width, format, title) {
  const scale = plotH / top[top.length - 1];
  for (const v of top) {
    const y = PAD.top + plotH - v * scale;
    nodes.push(svg("line", { x1: PAD.left, x2: width - PAD.right, y1: y, y2: y, class: v ? "grid" : "axis" }));
    nodes.push(svg("text", { x: PAD.left - 6, y: y + 4, class: "tick", "text-anchor": "end" }, format(v)));
  }
  nodes.push(svg("text", {
    x: 12, y: PAD.top + plotH / 2, class: "axis-title", "text-anchor": "middle",
    transform: `rotate(-90 12 ${PAD.top + plotH / 2})`,
  }, title));
  return scale;
}

function legend(box, items) {
  box.replaceChildren(...items.map((item) =>
    el("span", { class: "legend-item", "data-series": item.key },
      el("span", { class: `swatch ${item.cls}` }), `${item.label} `, el("b", {}, item.value))));
}

function stackedBar(group, x, w, bottom, parts, scale) {
  let y = bottom;
  for (const part of parts) {
    const h = part.value * scale;
    if (h <= 0) continue;
    y -= h;
    group.append(svg("rect", { x, y, width: w, height: Math.max(h, 0.5), class: part.cls }));
  }
}

// The finished states, as the API names them (done, skipped, failed): every key of a
// point but its minute and chunks.
function seriesOf(points) {
  return Object.keys(points[0] || {}).filter((k) => k !== "minute" && k !== "chunks");
}

// points: [{minute, done, skipped, failed, chunks}], oldest first.
export function renderThroughput(node, legendBox, points) {
  const keys = seriesOf(points);
  const SERIES = Object.fromEntries(keys.map((k) => [k, { label: word(k), cls: `fill-${k}` }]));
  const { width, plotW, plotH } = frame(node);
  const max = Math.max(0, ...points.map((p) => keys.reduce((sum, k) => sum + (p[k] || 0), 0)));
  const top = ticks(Math.max(max, 4));
  const nodes = [];
  const scale = yAxis(nodes, top, plotH, width, (v) => String(v), "documents / min");
  const slot = plotW / Math.max(1, points.length);
  const bottom = PAD.top + plotH;
  const every = slot < 34 ? 5 : slot < 60 ? 2 : 1;
  points.forEach((p, i) => {
    const w = Math.max(2, Math.min(slot * 0.7, MAX_BAR));
    const x = PAD.left + i * slot + (slot - w) / 2;
    const at = new Date(p.minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    const group = svg("g", { class: "bar", "data-minute": p.minute });
    group.append(svg("title", {}, `${at}: ` + keys.map((k) => `${p[k]} ${SERIES[k].label}`).join(", ") +
      ` · ${p.chunks} chunks`));
    group.append(svg("rect", { x: PAD.left + i * slot, y: PAD.top, width: slot, height: plotH, class: "hover" }));
    stackedBar(group, x, w, bottom, keys.map((k) => ({ value: p[k] || 0, cls: SERIES[k].cls })), scale);
    nodes.push(group);
    const back = points.length - 1 - i;
    if (back % every === 0) {
      nodes.push(svg("text", { x: x + w / 2, y: bottom + 16, class: "tick", "text-anchor": "middle" },
        back === 0 ? "now" : at));
    }
  });
  nodes.push(svg("text", { x: PAD.left + plotW / 2, y: HEIGHT - 2, class: "axis-title", "text-anchor": "middle" },
    `minute finished (last ${points.length} minutes)`));
  node.replaceChildren(...nodes);
  legend(legendBox, keys.map((k) => ({
    key: k, ...SERIES[k], value: points.reduce((sum, p) => sum + (p[k] || 0), 0),
  })));
}

const STAGE_CLASSES = { fetch: "stage-fetch", extract: "stage-extract", chunk: "stage-chunk", embed: "stage-embed", merge: "stage-merge" };

export function stageClass(stage, stages) {
  if (STAGE_CLASSES[stage]) return STAGE_CLASSES[stage];
  const own = stages.filter((s) => !STAGE_CLASSES[s]);
  return `stage-other-${own.indexOf(stage) % 3}`;
}

// timings: {stages, documents: [{id, name, timings, total}], seconds: {stage: s}}.
export function renderStages(node, legendBox, timings, onPick) {
  const { stages, documents } = timings;
  const { width, plotW, plotH } = frame(node);
  const nodes = [];
  const max = Math.max(0, ...documents.map((d) => d.total));
  const top = ticks(max > 0 ? max : 1);
  const scale = yAxis(nodes, top, plotH, width, (v) => (v >= 1 && Number.isInteger(v) ? `${v} s` : seconds(v)), "seconds");
  const slot = plotW / Math.max(1, documents.length);
  const bottom = PAD.top + plotH;
  documents.forEach((d, i) => {
    const w = Math.max(2, Math.min(slot - 2 * Math.min(slot * 0.15, 6), MAX_BAR));
    const x = PAD.left + i * slot + (slot - w) / 2;
    const group = svg("g", { class: "bar", "data-id": d.id });
    group.append(svg("title", {}, `${d.name}: ${seconds(d.total)} — ` +
      stages.filter((s) => d.timings[s]).map((s) => `${s} ${seconds(d.timings[s])}`).join(", ")));
    group.append(svg("rect", { x: PAD.left + i * slot, y: PAD.top, width: slot, height: plotH, class: "hover" }));
    stackedBar(group, x, w, bottom,
      stages.map((s) => ({ value: d.timings[s] || 0, cls: stageClass(s, stages) })), scale);
    if (onPick) group.addEventListener("click", () => onPick(d.id));
    nodes.push(group);
  });
  if (!documents.length) {
    nodes.push(svg("text", { x: PAD.left + plotW / 2, y: PAD.top + plotH / 2, class: "tick", "text-anchor": "middle" },
      "no document done yet"));
  }
  nodes.push(svg("text", { x: PAD.left + plotW / 2, y: HEIGHT - 2, class: "axis-title", "text-anchor": "middle" },
    `last ${documents.length} documents done, oldest → newest`));
  node.replaceChildren(...nodes);
  const total = Object.values(timings.seconds).reduce((a, b) => a + b, 0) || 1;
  legend(legendBox, stages.map((s) => ({
    key: s, label: s, cls: stageClass(s, stages),
    value: `${Math.round((100 * (timings.seconds[s] || 0)) / total)}%`,
  })));
}
