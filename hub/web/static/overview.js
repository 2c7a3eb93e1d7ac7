// The community at a glance: every sensor in view as a tile, grouped by building and space (or grid), coloured by
// state — in an open alert (by grade), stale, not heard yet, or fine — with its newest value; the open alerts by
// grade above. Updated live from /api/v1/stream (sensor values once a second, alert changes as they happen).
import { api, apiAll, el, reconcile } from "/app/static/api.js";

const ACTIVE = new Set(["open", "acknowledged", "en_route", "on_site"]);
const GRADES = ["I", "II", "III", "IV"];
const sensors = new Map();
const alarms = new Map(); // alert id -> {sensor, grade, state}
let gateways = [];
let floor = null; // the site plan's floor shown (null: chosen from where the alarms are)
// Live updates change the nodes on screen in place, never replace them: a tap in progress on a tile, a dot or a floor
// button (mousedown … mouseup on one node) survives the once-a-second sensor update.
const tiles = new Map(); // sensor id -> { node, value, why }
const places = new Map(); // place name -> { node, box }
let planShown = null; // what the site plan was built for (floor, floors, sensors placed)
const dots = new Map(); // sensor id -> its circle on the plan
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function stateOf(sensor) {
  const grade = worstGrade(sensor.sensor);
  return grade ? `alarm-${grade}` : sensor.status === "fresh" ? "fresh" : sensor.status;
}

// The site plan: the sensors the deployment places (metres from the north-west corner), one floor at a time,
// each a dot in its state's colour, buildings outlined around their sensors; a tap opens the sensor.
function sitePlan() {
  const placed = [...sensors.values()].filter((s) => s.position);
  const box = document.getElementById("plan");
  if (!placed.length) { box.replaceChildren(); return; }
  const floors = [...new Set(placed.map((s) => s.position.floor))].sort((a, b) => a - b);
  if (floor === null || !floors.includes(floor)) {
    const alarmed = placed.filter((s) => worstGrade(s.sensor));
    floor = alarmed.length ? alarmed[0].position.floor : floors.includes(1) ? 1 : floors[0];
  }
  const here = placed.filter((s) => s.position.floor === floor);
  const shown = JSON.stringify([floor, floors, placed.map((s) => s.sensor)]);
  if (shown === planShown) {
    for (const s of here) {
      const dot = dots.get(s.sensor);
      const state = stateOf(s);
      if (dot && dot.getAttribute("data-state") !== state) {
        dot.setAttribute("class", `dot ${state}`);
        dot.setAttribute("data-state", state);
      }
    }
    return;
  }
  planShown = shown;
  dots.clear();
  const xs = placed.map((s) => s.position.x), ys = placed.map((s) => s.position.y);
  const left = Math.min(...xs) - 6, top = Math.min(...ys) - 8;
  const width = Math.max(...xs) - left + 6, height = Math.max(...ys) - top + 6;
  const plan = svg("svg", { class: "plan", viewBox: `${left} ${top} ${width} ${height}`, role: "img",
    "aria-label": `site plan, floor ${floor}` });
  const buildings = new Map();
  for (const s of placed) {
    if (!s.building) continue;
    const b = buildings.get(s.building) || { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    buildings.set(s.building, { x0: Math.min(b.x0, s.position.x), y0: Math.min(b.y0, s.position.y),
      x1: Math.max(b.x1, s.position.x), y1: Math.max(b.y1, s.position.y) });
  }
  for (const [name, b] of buildings) {
    plan.append(svg("rect", { class: "building", x: b.x0 - 3, y: b.y0 - 3, width: b.x1 - b.x0 + 6, height: b.y1 - b.y0 + 6, rx: 1 }));
    plan.append(svg("text", { x: b.x0 - 3, y: b.y0 - 4, class: "label" }, name));
  }
  for (const s of here) {
    const link = svg("a", { href: `/app/sensors/${encodeURIComponent(s.sensor)}` });
    const spread = here.filter((o) => o.position.x === s.position.x && o.position.y === s.position.y);
    const offset = spread.indexOf(s) * 2.2;  // detectors at one spot side by side
    const dot = svg("circle", { class: `dot ${stateOf(s)}`, cx: s.position.x + offset, cy: s.position.y, r: 1,
      id: `dot-${s.sensor}`, "data-state": stateOf(s) });
    dot.append(svg("title", {}, `${s.location} ${s.kind_zh} ${s.sensor}`));
    dots.set(s.sensor, dot);
    link.append(dot);
    plan.append(link);
  }
  const tabs = el("div", { class: "ranges", id: "floors" }, ...floors.map((f) => el("button", { type: "button",
    "aria-pressed": String(f === floor), onclick: () => { floor = f; render(); } }, f < 0 ? `B${-f} 地下` : `${f} 层`)));
  box.replaceChildren(tabs, plan);
}

function worstGrade(sensor) {
  let worst = null;
  for (const alarm of alarms.values()) {
    if (alarm.sensor === sensor && ACTIVE.has(alarm.state) && (worst === null || GRADES.indexOf(alarm.grade) < GRADES.indexOf(worst))) {
      worst = alarm.grade;
    }
  }
  return worst;
}

// A sensor's tile: made once, then its state, value and reason set in place.
function tile(sensor) {
  let shown = tiles.get(sensor.sensor);
  if (!shown) {
    const value = el("span", { class: "v" });
    const why = el("div", { hidden: true });
    const node = el("a", { href: `/app/sensors/${encodeURIComponent(sensor.sensor)}`, id: `tile-${sensor.sensor}`,
      title: `${sensor.location} ${sensor.sensor}` }, value, `${sensor.kind_zh} · ${sensor.sensor}`, why);
    shown = { node, value, why };
    tiles.set(sensor.sensor, shown);
  }
  const state = stateOf(sensor);
  const value = sensor.value === null || sensor.value === undefined ? "—" : `${+sensor.value.toPrecision(4)} ${sensor.unit}`;
  const why = sensor.status === "stale" ? (sensor.reason === "gateway-offline" ? "网关离线 / gateway offline" : "失联 / stale") : "";
  if (shown.node.dataset.state !== state) {
    shown.node.className = `tile ${state}`;
    shown.node.dataset.state = state;
  }
  if (shown.value.textContent !== value) shown.value.textContent = value;
  if (shown.why.textContent !== why) {
    shown.why.textContent = why;
    shown.why.hidden = !why;
  }
  return shown.node;
}

function place(name, members) {
  let shown = places.get(name);
  if (!shown) {
    const box = el("div", { class: "tiles" });
    shown = { node: el("section", { class: "place" }, el("h3", {}, name), box), box };
    places.set(name, shown);
  }
  reconcile(shown.box, members.map(tile));
  return shown.node;
}

function render() {
  const groups = new Map();
  for (const sensor of sensors.values()) {
    const place = sensor.building ? `楼栋 / building ${sensor.building}` : `网格 / grid ${sensor.grid}`;
    const key = sensor.space ? `${place} · ${sensor.space}` : place;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(sensor);
  }
  sitePlan();
  reconcile(document.getElementById("places"), [...groups.entries()].sort().map(([name, members]) => place(name, members)));
  const open = [...alarms.values()].filter((a) => ACTIVE.has(a.state));
  document.getElementById("alert-counts").replaceChildren(...GRADES.map((g) =>
    el("span", { class: "count", id: `count-${g}` }, el("span", { class: `grade ${g}` }, g), ` ${open.filter((a) => a.grade === g).length}`)));
  const by = (status) => [...sensors.values()].filter((s) => s.status === status).length;
  document.getElementById("sensor-counts").replaceChildren(
    el("span", { class: "count" }, `传感器 / sensors ${sensors.size}`),
    el("span", { class: "count", id: "count-stale" }, `失联 / stale ${by("stale")}`),
    el("span", { class: "count" }, `未上报 / unseen ${by("unseen")}`),
    el("span", { class: "count", id: "count-gateways" },
      `网关离线 / gateways offline ${gateways.filter((g) => !g.online).length} / ${gateways.length}`,
      ...gateways.filter((g) => !g.online).map((g) => ` · ${g.id}（${g.location}）`)));
}

async function load() {
  const [list, alerts, community] = await Promise.all([
    apiAll("/sensors?limit=5000", { key: "sensors" }), apiAll("/alerts?active=true&limit=1000"), api("/community"),
  ]);
  gateways = community.gateways;
  sensors.clear();
  for (const sensor of list.sensors) sensors.set(sensor.sensor, sensor);
  alarms.clear();
  for (const alert of alerts) alarms.set(alert.id, { sensor: alert.sensor, grade: alert.grade, state: alert.state });
  render();
}

function listen() {
  const status = document.getElementById("status");
  const source = new EventSource("/api/v1/stream");
  source.addEventListener("open", () => { status.className = "status live"; status.textContent = "实时 / live"; });
  source.addEventListener("error", () => { status.className = "status down"; status.textContent = "连接中断，正在重连… / reconnecting…"; });
  source.addEventListener("sensors", (message) => {
    for (const change of JSON.parse(message.data).sensors) {
      const known = sensors.get(change.sensor);
      if (known) Object.assign(known, { value: change.value, status: change.status, reason: change.reason });
    }
    render();
  });
  source.addEventListener("alert", (message) => {
    const { alert } = JSON.parse(message.data);
    alarms.set(alert.id, { sensor: alert.sensor, grade: alert.grade, state: alert.state });
    render();
  });
  source.addEventListener("reset", () => { source.close(); load().then(listen); });
  // Gateways' births and deaths are not on the stream: their state is read again every 15 s.
  setInterval(async () => {
    try {
      gateways = (await api("/community")).gateways;
      render();
    } catch (error) { /* the next round tries again */ }
  }, 15_000);
}

load().then(listen).catch((error) =>
  document.getElementById("problem").replaceChildren(el("p", { class: "banner error", role: "alert" }, error.message)));
