// A time chart drawn as SVG from the API's buckets: the min–max band, the mean line, set points as dashed lines
// and events (alerts) as vertical marks. Our own code: no chart library to load on a site without internet.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

const AXIS = new Intl.DateTimeFormat("zh-CN", { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });

// buckets: [{start_ms, min, max, mean}], oldest first; limits: [{value, label}]; marks: [{time, label}] (ms).
export function chart(buckets, { limits = [], marks = [], unit = "", from, to } = {}) {
  const width = 600, height = 200, left = 44, bottom = 22, top = 6;
  const box = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `readings in ${unit}` });
  if (!buckets.length) {
    box.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "无读数 / no readings"));
    return box;
  }
  const t0 = from ?? buckets[0].start_ms;
  const t1 = Math.max(to ?? buckets[buckets.length - 1].start_ms, t0 + 1);
  let lo = Math.min(...buckets.map((b) => b.min)), hi = Math.max(...buckets.map((b) => b.max));
  for (const limit of limits) { lo = Math.min(lo, limit.value); hi = Math.max(hi, limit.value); }
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.05;
  lo -= pad; hi += pad;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - 6);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - bottom - top);
  const band = buckets.map((b) => `${x(b.start_ms)},${y(b.max)}`).concat(
    [...buckets].reverse().map((b) => `${x(b.start_ms)},${y(b.min)}`));
  box.append(svg("polygon", { class: "band", points: band.join(" ") }));
  box.append(svg("polyline", { class: "mean", points: buckets.map((b) => `${x(b.start_ms)},${y(b.mean)}`).join(" ") }));
  for (const limit of limits) {
    box.append(svg("line", { class: "limit", x1: left, x2: width, y1: y(limit.value), y2: y(limit.value) }));
    box.append(svg("text", { x: width - 4, y: y(limit.value) - 3, "text-anchor": "end" }, limit.label));
  }
  for (const mark of marks.filter((m) => m.time >= t0 && m.time <= t1)) {
    box.append(svg("line", { class: "mark", x1: x(mark.time), x2: x(mark.time), y1: top, y2: height - bottom }));
    box.append(svg("text", { x: x(mark.time) + 3, y: top + 10 }, mark.label));
  }
  box.append(svg("text", { x: 2, y: top + 10 }, `${+hi.toPrecision(3)}`));
  box.append(svg("text", { x: 2, y: height - bottom }, `${+lo.toPrecision(3)}`));
  box.append(svg("text", { x: left, y: height - 6 }, AXIS.format(new Date(t0))));
  box.append(svg("text", { x: width - 4, y: height - 6, "text-anchor": "end" }, AXIS.format(new Date(t1))));
  return box;
}
