// Emergency mode (Art. 25): the incidents in view, and one incident's board — its area, the alerts attached, the
// residents' status counted and listed (who needs help first), the volunteers mobilised, the notices sent and the
// measures with their deadlines; households are reported from here; export for the record. Refreshed every 10 s
// and at once on any alert change.
import { api, el, reconcile, when } from "/app/static/api.js";

const STATUS = { "needs-help": "需要帮助 / needs help", unreachable: "联系不上 / unreachable", safe: "平安 / safe" };
const ORDER = ["needs-help", "unreachable", "safe"];
let me = null;

function problem(text) {
  document.getElementById("problem").replaceChildren(text ? el("p", { class: "banner error", role: "alert" }, text) : "");
}

async function list() {
  const incidents = await api("/incidents");
  document.getElementById("board").replaceChildren(...(incidents.length ? incidents.map((i) =>
    el("article", { class: `card ${i.active ? "grade-II" : ""}` },
      el("div", { class: "top" }, el("span", { class: "what" }, i.title), el("span", { class: "state" }, i.active ? "进行中 / active" : "已结束 / closed")),
      el("div", { class: "facts" }, `${i.kind} · ${when(i.declared_at)} · ${i.declared_by}`),
      el("div", { class: "actions" }, el("a", { class: "button", href: `/app/incidents/${encodeURIComponent(i.id)}` }, "事件看板 / Board"))))
    : [el("p", { class: "empty" }, "暂无应急事件 / no incidents")]));
}

function section(title, ...children) {
  return el("section", {}, el("h2", {}, title), ...children);
}

const drawn = new Map(); // board section -> its node on screen

// The node already on screen when the fresh one draws the same (these sections hold links, no listeners): a refresh
// every 10 s and on every alert change must not swallow a tap on a link in them.
function same(name, fresh) {
  const shown = drawn.get(name);
  if (shown && shown.outerHTML === fresh.outerHTML) return shown;
  drawn.set(name, fresh);
  return fresh;
}

let residentsSection = null;  // the residents' section: built once, so the report being typed outlives every refresh

function residents(id, reported) {
  if (residentsSection === null) residentsSection = reportSection(id);
  const list = el("div", { id: "households" }, ...reported.map((h) =>
    el("div", { class: "facts", "data-status": h.status }, `${h.household} · ${STATUS[h.status] || h.status} · ${h.note || ""} · ${h.reported_by} ${when(h.reported_at)}${h.verified_by ? " ✓" : ""}`)));
  const [title, , form] = residentsSection.childNodes;
  reconcile(residentsSection, [title, same("households", list), form]);
  return residentsSection;
}

function reportSection(id) {
  const path = `/incidents/${encodeURIComponent(id)}`;
  const report = el("form", { class: "place", id: "report" },
    el("label", { for: "household" }, "住户 / household"), el("input", { id: "household", required: true, maxlength: 64 }),
    el("label", { for: "status" }, "状况 / status"),
    el("select", { id: "status" }, ...ORDER.map((s) => el("option", { value: s }, STATUS[s]))),
    el("label", { for: "note" }, "说明 / note"), el("input", { id: "note", maxlength: 500 }),
    el("div", { class: "actions" }, el("button", { class: "primary", type: "submit" }, "上报 / Report")));
  report.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`${path}/households`, { method: "POST", body: {
        by: me.person || me.name, household: report.querySelector("#household").value.trim(),
        status: report.querySelector("#status").value, note: report.querySelector("#note").value } });
      problem("");
      report.reset();
      await board(id);
    } catch (error) { problem(error.message); }
  });
  return section("住户 / Households", el("div", { id: "households" }), report);
}

async function board(id) {
  const path = `/incidents/${encodeURIComponent(id)}`;
  const [incident, households] = await Promise.all([api(path), api(`${path}/households`)]);
  const alerts = await Promise.all(incident.alerts.map((a) => api(`/alerts/${encodeURIComponent(a)}`).catch(() => null)));
  document.title = `${incident.title} — 安居 Anju`;
  const counts = incident.counts || {};
  const attached = alerts.filter((a) => a !== null);
  households.sort((a, b) => ORDER.indexOf(a.status) - ORDER.indexOf(b.status) || a.household.localeCompare(b.household));
  const volunteers = incident.volunteers || { asked: 0, mobilised: 0, skills: {}, volunteers: [] };
  reconcile(document.getElementById("board"), [
    same("head", el("article", { class: `card ${incident.active ? "grade-II" : ""}` },
      el("div", { class: "top" }, el("span", { class: "what" }, incident.title),
        el("span", { class: "state" }, incident.active ? "进行中 / active" : "已结束 / closed")),
      el("div", { class: "facts" }, `区域 / area: ${[...incident.grids, ...incident.buildings].join("、") || "全社区 / whole community"}`),
      el("div", { class: "facts" }, `${incident.kind} · ${when(incident.declared_at)} · ${incident.declared_by}`),
      el("div", { class: "actions" },
        el("a", { class: "button", href: `/api/v1${path}/export.csv`, download: "" }, "导出 / Export CSV"),
        el("a", { class: "button", href: `/api/v1${path}/summary.html` }, "汇总 / Summary")))),
    same("counts", el("div", { class: "summary", id: "counts" }, ...ORDER.map((s) => el("span", { class: "count", "data-status": s }, `${STATUS[s]} ${counts[s] || 0}`)))),
    residents(id, households),
    same("alerts", section("关联告警 / Alerts", ...attached.map((a) => el("a", { class: "button", href: `/app/alerts/${encodeURIComponent(a.id)}` }, `${a.grade} ${a.location}`)))),
    same("volunteers", section(`志愿者 / Volunteers（${volunteers.mobilised} / ${volunteers.asked}）`, ...volunteers.volunteers.map((v) =>
      el("div", { class: "facts" }, `${v.name} · ${v.skills.join("、")} · ${v.mobilised ? "已到位 / mobilised" : v.answer || "待答复 / asked"}`)))),
    same("notices", section("已发通知 / Notices", ...(incident.notices || []).map((n) => el("div", { class: "facts" }, `${when(n.sent_at)} ${n.text_zh}`)))),
    same("measures", section("整治措施 / Measures", ...(incident.measures || []).map((m) =>
      el("div", { class: "facts" }, `${m.department_name} · ${m.text} · 期限 / due ${when(m.due)}` +
        (m.confirmed_by ? ` · 已确认 / confirmed by ${m.confirmed_by}` : m.overdue ? " · 已逾期 / overdue" : ""))))),
  ]);
}

async function main() {
  me = await api("/auth/me");
  const parts = location.pathname.split("/").filter(Boolean);
  if (parts.length > 2) {
    const id = decodeURIComponent(parts[2]);
    await board(id);
    setInterval(() => board(id).catch((error) => problem(error.message)), 10_000);
    new EventSource("/api/v1/stream?sensors=false").addEventListener("alert", () => board(id).catch(() => {}));
  } else {
    await list();
  }
}

main().catch((error) => problem(error.message));
