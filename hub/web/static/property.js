// The property company's console: its buildings with every detector that needs attention (not reporting, never
// heard, in an open alert), the work orders sent to it with their next step, and maintenance windows (silences)
// for detector tests — set on its own detectors, lifted early when the test is over.
import { api, apiAll, el, when } from "/app/static/api.js";

const ACTIVE = new Set(["open", "acknowledged", "en_route", "on_site"]);
const ORDER_STEP = { dispatched: ["accept", "接单 / Accept"], accepted: ["done", "完成 / Done"] };
let me = null;

function problem(text) {
  document.getElementById("problem").replaceChildren(text ? el("p", { class: "banner error", role: "alert" }, text) : "");
}

async function act(work) {
  try {
    await work();
    problem("");
    await load();
  } catch (error) {
    problem(error.message);
  }
}

function buildings(sensors, alerts) {
  const alarmed = new Set(alerts.filter((a) => ACTIVE.has(a.state)).map((a) => a.sensor));
  const groups = new Map();
  for (const s of sensors) {
    const key = s.building || s.grid;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s);
  }
  return [...groups.entries()].sort().map(([building, members]) => {
    const faults = members.filter((s) => s.status !== "fresh" || alarmed.has(s.sensor));
    return el("article", { class: "place", "data-building": building },
      el("h3", {}, `${building} · 探测器 / detectors ${members.length} · 需处理 / attention ${faults.length}`),
      ...faults.map((s) => el("div", { class: "facts", "data-sensor": s.sensor },
        el("a", { href: `/app/sensors/${encodeURIComponent(s.sensor)}` }, `${s.location} ${s.kind_zh} ${s.sensor}`),
        " · " + (alarmed.has(s.sensor) ? "告警中 / in alarm"
          : s.status === "stale" ? (s.reason === "gateway-offline" ? "网关离线 / gateway offline" : "失联 / not reporting")
          : "未上报 / never heard"))));
  });
}

function orders(list) {
  if (!list.length) return [el("p", { class: "empty" }, "暂无待办工单 / no open work orders")];
  return list.map((o) => {
    const step = ORDER_STEP[o.state];
    return el("article", { class: `card grade-${o.alert_grade}`, "data-order": o.id },
      el("div", { class: "top" }, el("span", { class: "what" }, o.task), el("span", { class: "state" }, o.state)),
      el("div", { class: "where" }, o.alert_location),
      el("div", { class: "facts" }, `期限 / due ${when(o.due_at)} · ${o.created_by}`),
      step ? stepControls(o, step) : "");
  });
}

// Done needs the "after" evidence (a photo link on the company's own server) and a note of what was done.
function stepControls(order, [path, label]) {
  const url = `/work-orders/${encodeURIComponent(order.id)}/${path}`;
  const by = me.person || me.name;
  if (path !== "done") {
    return el("div", { class: "actions" }, el("button", { class: "primary", type: "button",
      onclick: () => act(() => api(url, { method: "POST", body: { by } })) }, label));
  }
  const link = el("input", { type: "url", placeholder: "完工照片链接 / link to the after photo", "aria-label": "evidence" });
  const note = el("input", { placeholder: "处置说明 / what was done", "aria-label": "note", maxlength: 2000 });
  return el("div", { class: "actions" }, link, note, el("button", { class: "primary", type: "button", onclick: () => {
    if (!/^https?:\/\/\S+$/.test(link.value.trim())) { problem("请填写完工照片链接 / the after photo's link is needed"); return; }
    act(() => api(url, { method: "POST", body: { by, note: note.value.trim(),
      evidence: [{ phase: "after", url: link.value.trim(), note: note.value.trim() }] } }));
  } }, label));
}

function silences(list) {
  if (!list.length) return [el("p", { class: "empty" }, "当前无静默 / no silence running")];
  return list.map((s) => el("article", { class: "card", "data-silence": s.id },
    el("div", { class: "top" }, el("span", { class: "what" }, s.reason), el("span", { class: "state" }, `至 / until ${when(s.ends_at)}`)),
    el("div", { class: "facts" }, `${s.sensors.join("、")} · ${s.created_by} · 已静默 / muted ${s.muted}`),
    el("div", { class: "actions" }, el("button", { type: "button", onclick: () => act(() =>
      api(`/silences/${encodeURIComponent(s.id)}/lift`, { method: "POST", body: { by: me.person || me.name } })) }, "提前结束 / Lift"))));
}

function silenceForm(sensors) {
  const form = document.getElementById("silence");
  const places = [...new Set(sensors.map((s) => s.building || s.grid))].sort();
  const kinds = [...new Map(sensors.map((s) => [s.kind, s.kind_zh])).entries()];
  form.replaceChildren(
    el("label", { for: "silence-building" }, "楼栋 / building"),
    el("select", { id: "silence-building" }, ...places.map((p) => el("option", { value: p }, p))),
    el("label", { for: "silence-kind" }, "探测器类型 / detector kind"),
    el("select", { id: "silence-kind" }, ...kinds.map(([kind, zh]) => el("option", { value: kind }, zh))),
    el("label", { for: "silence-hours" }, "时长（小时） / hours"),
    el("input", { id: "silence-hours", type: "number", min: 1, max: 168, value: 2 }),
    el("label", { for: "silence-reason" }, "原因 / reason"),
    el("input", { id: "silence-reason", required: true, maxlength: 500, placeholder: "如：2栋烟感年度测试" }),
    el("div", { class: "actions" }, el("button", { class: "primary", type: "submit" }, "设置静默 / Set silence")));
  form.onsubmit = (event) => {
    event.preventDefault();
    const place = form.querySelector("#silence-building").value;
    const kind = form.querySelector("#silence-kind").value;
    const chosen = sensors.filter((s) => (s.building || s.grid) === place && s.kind === kind).map((s) => s.sensor);
    if (!chosen.length) { problem("该楼栋没有这类探测器 / no such detector in that building"); return; }
    const hours = Number(form.querySelector("#silence-hours").value);
    act(() => api("/silences", { method: "POST", body: {
      by: me.person || me.name, reason: form.querySelector("#silence-reason").value.trim(),
      ends_at: new Date(Date.now() + hours * 3600_000).toISOString(), sensors: chosen } }));
  };
}

async function load() {
  const [sensors, alerts, open, running] = await Promise.all([
    apiAll("/sensors?limit=5000", { key: "sensors" }), apiAll("/alerts?active=true&limit=1000"),
    apiAll("/work-orders?open_only=true"), apiAll("/silences?running=true"),
  ]);
  document.getElementById("buildings").replaceChildren(...buildings(sensors.sensors, alerts));
  document.getElementById("orders").replaceChildren(...orders(open));
  document.getElementById("silences").replaceChildren(...silences(running));
  return sensors.sensors;
}

async function main() {
  me = await api("/auth/me");
  silenceForm(await load());
}

main().catch((error) => problem(error.message));
