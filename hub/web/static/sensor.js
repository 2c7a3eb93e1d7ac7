// One sensor's history, from minutes to a year, out of the hub's buckets (the rollups beyond the raw retention),
// with its kind's set points drawn and its alerts marked.
import { api, el, when } from "/app/static/api.js";
import { chart } from "/app/static/chart.js";

const HOUR = 3600_000, DAY = 24 * HOUR;
const RANGES = [
  { label: "1 小时 / 1 h", span: HOUR, width: "1m" },
  { label: "24 小时 / 24 h", span: DAY, width: "15m" },
  { label: "7 天 / 7 d", span: 7 * DAY, width: "1h" },
  { label: "30 天 / 30 d", span: 30 * DAY, width: "6h" },
  { label: "1 年 / 1 y", span: 365 * DAY, width: "1d" },
];

let sensor = null;
let alerts = [];

async function draw(range) {
  for (const button of document.querySelectorAll("#ranges button")) {
    button.setAttribute("aria-pressed", String(button.dataset.span === String(range.span)));
  }
  const end = Date.now() + 1;
  const start = end - range.span;
  const data = await api(`/readings/buckets?sensor=${encodeURIComponent(sensor.sensor)}&width=${range.width}&start=${start}&end=${end}`);
  const limits = sensor.set_points.map((p) => ({ value: p.value, label: `${p.name} ${p.value} ${sensor.unit}（${p.grade}）` }));
  const marks = alerts.map((a) => ({ time: new Date(a.opened_at).getTime(), label: `${a.grade} 告警` }));
  document.getElementById("chart").replaceChildren(chart(data.buckets, { limits, marks, unit: sensor.unit, from: start, to: end }));
  document.getElementById("range-note").textContent = `${data.buckets.length} 个 ${range.width} 桶 / buckets`;
}

async function main() {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  sensor = await api(`/sensors/${encodeURIComponent(id)}`);
  alerts = await api(`/alerts?sensor=${encodeURIComponent(sensor.sensor)}&limit=100`);
  document.title = `${sensor.kind_zh} ${sensor.location} — 安居 Anju`;
  const value = sensor.value === null ? "—" : `${sensor.value} ${sensor.unit}（${when(sensor.time)}）`;
  document.getElementById("sensor").replaceChildren(el("article", { class: "card" },
    el("div", { class: "top" }, el("span", { class: "what" }, `${sensor.kind_zh} / ${sensor.kind_en} · ${sensor.sensor}`),
      el("span", { class: "state" }, sensor.status)),
    el("div", { class: "where" }, sensor.location),
    el("div", { class: "facts", id: "latest" }, `最新 / latest: ${value}`),
    el("div", { class: "facts" }, `网格 / grid ${sensor.grid} · 网关 / gateway ${sensor.gateway}`)));
  document.getElementById("ranges").replaceChildren(...RANGES.map((range) =>
    el("button", { type: "button", "data-span": String(range.span), onclick: () => draw(range) }, range.label)));
  await draw(RANGES[1]);
}

main().catch((error) =>
  document.getElementById("problem").replaceChildren(el("p", { class: "banner error", role: "alert" }, error.message)));
