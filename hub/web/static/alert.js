// One alert: what, where, the readings of its sensor around it with the set point drawn, and the audited timeline
// (who took which step, when, through which channel; escalations and upgrades included).
import { api, el, STATES, when } from "/app/static/api.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function chart(buckets, threshold, unit) {
  const width = 600, height = 180, left = 40, bottom = 20;
  const box = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `readings in ${unit}` });
  if (!buckets.length) {
    box.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "无读数 / no readings"));
    return box;
  }
  const t0 = buckets[0].start_ms, t1 = buckets[buckets.length - 1].start_ms || t0 + 1;
  let lo = Math.min(...buckets.map((b) => b.min)), hi = Math.max(...buckets.map((b) => b.max));
  if (threshold !== null) { lo = Math.min(lo, threshold); hi = Math.max(hi, threshold); }
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => left + ((t - t0) / Math.max(1, t1 - t0)) * (width - left - 5);
  const y = (v) => 5 + (1 - (v - lo) / (hi - lo)) * (height - bottom - 10);
  const band = buckets.map((b) => `${x(b.start_ms)},${y(b.max)}`).concat(
    [...buckets].reverse().map((b) => `${x(b.start_ms)},${y(b.min)}`));
  box.append(svg("polygon", { class: "band", points: band.join(" ") }));
  box.append(svg("polyline", { class: "mean", points: buckets.map((b) => `${x(b.start_ms)},${y(b.mean)}`).join(" ") }));
  if (threshold !== null) {
    box.append(svg("line", { class: "limit", x1: left, x2: width, y1: y(threshold), y2: y(threshold) }));
    box.append(svg("text", { x: width - 4, y: y(threshold) - 3, "text-anchor": "end" }, `阈值 ${threshold} ${unit}`));
  }
  box.append(svg("text", { x: 2, y: 12 }, `${hi.toPrecision(3)}`), svg("text", { x: 2, y: height - bottom }, `${lo.toPrecision(3)}`));
  return box;
}

async function main() {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const [alert, trail] = await Promise.all([
    api(`/alerts/${encodeURIComponent(id)}`),
    api(`/alerts/${encodeURIComponent(id)}/transitions`),
  ]);
  document.title = `${alert.grade_label_zh} ${alert.location} — 安居 Anju`;
  const value = `${alert.value} ${alert.unit}` + (alert.threshold === null ? "" : `（阈值 / limit ${alert.threshold}）`);
  document.getElementById("alert").replaceChildren(
    el("article", { class: `card grade-${alert.grade}` },
      el("div", { class: "top" },
        el("span", { class: `grade ${alert.grade}` }, alert.grade_label_zh),
        el("span", { class: "what" }, `${alert.kind} · ${alert.rule}`),
        el("span", { class: "state" }, STATES[alert.state] || alert.state)),
      el("div", { class: "where" }, alert.location),
      el("div", { class: "facts" }, `${alert.sensor} · ${value}`),
      el("div", { class: "facts" }, `依据 / source: ${alert.source}`),
      el("div", { class: "facts" }, `开始 / opened ${when(alert.opened_at)}` +
        (alert.next_deadline ? ` · 下一时限 / next deadline ${when(alert.next_deadline)}` : ""))));
  document.getElementById("timeline").replaceChildren(...trail.map((t) =>
    el("li", {},
      el("time", {}, when(t.time)),
      `${t.from_state ? STATES[t.from_state] || t.from_state : "—"} → ${STATES[t.to_state] || t.to_state}`,
      ` · ${t.by}（${t.channel}）`,
      t.note ? el("div", { class: "facts" }, t.note) : "")));
  const opened = new Date(alert.opened_at).getTime();
  const end = Math.min(Date.now(), opened + 12 * 3600_000);
  try {
    const buckets = await api(`/readings/buckets?sensor=${encodeURIComponent(alert.sensor)}&width=5m` +
      `&start=${end - 24 * 3600_000}&end=${end + 1}`);
    document.getElementById("chart").replaceChildren(chart(buckets.buckets, alert.threshold, alert.unit));
  } catch (error) {
    document.getElementById("chart").replaceChildren(el("p", { class: "facts" }, error.message));
  }
}

main().catch((error) =>
  document.getElementById("problem").replaceChildren(el("p", { class: "banner error", role: "alert" }, error.message)));
