// The district node's page (hub/district/): every community in view at a glance, the open alerts of all of them
// (grades I and II first), and the incidents declared in several communities — where each stands, and the households
// by status summed — with the form that declares one. Refreshed every 10 s; the caller's scope applies as to any
// API client (a sub-district sees its own communities only).
import { api, el, logout, STATES, ago, when } from "/app/static/api.js";

const GRADES = ["I", "II", "III", "IV"];
const KINDS = { fire: "火灾 / fire", flood: "内涝 / flood", gas: "燃气 / gas", earthquake: "地震 / earthquake",
  epidemic: "疫情 / epidemic", "power-outage": "停电 / power outage", other: "其他 / other" };
const PART = { declared: "已启动 / declared", pending: "等待中 / pending", refused: "被拒 / refused" };
let me = null;

function problem(text) {
  document.getElementById("problem").replaceChildren(text ? el("p", { class: "banner error", role: "alert" }, text) : "");
}

// The section drawn again only when what it shows changed: the 10-s refresh redrawing the same rows could swallow a
// tap on a link in them, and scrolled the communities table back on a phone. (These sections hold no listeners.)
function show(id, ...nodes) {
  const box = document.getElementById(id);
  const next = document.createElement("div");
  next.append(...nodes);
  if (next.innerHTML !== box.innerHTML) box.replaceChildren(...next.childNodes);
}

function communities(rows) {
  const head = el("tr", {}, el("th", {}, "社区 / community"), el("th", {}, "街道 / sub-district"),
    ...GRADES.map((g) => el("th", {}, `${g} 级`)), el("th", {}, "已升级 / escalated"), el("th", {}, "未接单 / unacked"),
    el("th", {}, "应急事件 / incidents"), el("th", {}, "需帮助·失联 / help·unreachable"),
    el("th", {}, "网关在线 / gateways online"));
  const body = rows.map((c) => el("tr", { "data-community": c.id, class: c.unavailable ? "unavailable" : "" },
    el("td", {}, c.id), el("td", {}, c.sub_district_name || "—"),
    ...(c.unavailable
      ? [el("td", { colspan: 9 }, `无法读取 / unavailable: ${c.unavailable}`)]
      : [...GRADES.map((g) => el("td", { class: c.open_by_grade[g] ? `grade-${g}` : "" }, c.open_by_grade[g] ?? 0)),
        el("td", {}, c.escalated), el("td", {}, c.unacknowledged), el("td", {}, c.active_incidents),
        el("td", {}, `${c.households["needs-help"] ?? 0} · ${c.households.unreachable ?? 0}`),
        gateways(c)])));
  show("communities", rows.length
    ? el("table", { class: "grid" }, el("thead", {}, head), el("tbody", {}, ...body))
    : el("p", { class: "empty" }, "没有可见的社区 / no community in view"));
}

// Online of all, as the community's hub published them; marked when any is offline; "—" until it has published.
function gateways(c) {
  if (c.gateways === null || c.gateways === undefined) return el("td", { class: "gateways" }, "—");
  const offline = c.gateways - c.gateways_online;
  return el("td", { class: `gateways${offline ? " offline" : ""}`, title: `${offline} 离线 / offline` },
    `${c.gateways_online} / ${c.gateways}`);
}

// The gateways offline, by community: asked only of the communities whose count says some are.
async function offline(rows) {
  const down = rows.filter((c) => c.gateways !== null && c.gateways !== undefined && c.gateways_online < c.gateways);
  const lists = await Promise.all(down.map((c) => api(`/communities/${encodeURIComponent(c.id)}/gateways`)
    .then((gateways) => [c.id, gateways.filter((g) => !g.online)], () => [c.id, []])));
  const items = lists.flatMap(([community, gateways]) => gateways.map((g) =>
    el("li", { "data-gateway": `${community}/${g.id}` },
      `${community} · ${g.id} · ${g.location} · ${g.sensors} 个探测器 / detectors · 离线自 / offline since ${when(g.changed_at)}` +
      (g.last_message_at ? ` · 最后消息 / last message ${ago(g.last_message_at)}` : ""))));
  show("offline", ...(items.length
    ? [el("h3", {}, "离线网关 / Gateways offline"), el("ul", { class: "facts" }, ...items)] : []));
}

function alerts(rows) {
  const ordered = [...rows].sort((a, b) => GRADES.indexOf(a.grade) - GRADES.indexOf(b.grade));
  show("alerts", ...(ordered.length ? ordered.map((a) =>
    el("article", { class: `card grade-${a.grade}`, "data-alert": a.id },
      el("div", { class: "top" }, el("span", { class: "what" }, `${a.grade} 级 · ${a.kind_zh} / ${a.kind_en}`),
        el("span", { class: "state" }, STATES[a.state] || a.state)),
      el("div", { class: "facts" }, `${a.community} · ${a.location}`),
      el("div", { class: "facts" }, `${when(a.opened_at)} · ${ago(a.opened_at)}${a.escalation_level ? ` · 已升级至第 ${a.escalation_level} 级` : ""}`)))
    : [el("p", { class: "empty" }, "没有待处置的告警 / no open alerts")]));
}

function declarations(rows) {
  show("declarations", ...(rows.length ? rows.map((d) =>
    el("article", { class: "card grade-II", "data-declaration": d.id },
      el("div", { class: "top" }, el("span", { class: "what" }, d.title), el("span", { class: "state" }, KINDS[d.kind] || d.kind)),
      el("div", { class: "facts" }, `${when(d.declared_at)} · ${d.declared_by} · 平安 ${d.households.safe ?? 0} · 需帮助 ${d.households["needs-help"] ?? 0} · 失联 ${d.households.unreachable ?? 0}`),
      el("ul", {}, ...d.parts.map((p) => el("li", { "data-part": p.community, "data-state": p.state },
        `${p.community}: ${PART[p.state] || p.state}${p.error && p.state !== "declared" ? ` — ${p.error}` : ""}`))),
      el("div", { class: "actions" },
        el("a", { class: "button", href: `/api/v1/declarations/${encodeURIComponent(d.id)}/summary.html` }, "情况报告 / Summary"),
        el("a", { class: "button", href: `/api/v1/declarations/${encodeURIComponent(d.id)}/households.csv` }, "导出住户 CSV / Export"))))
    : [el("p", { class: "empty" }, "暂无 / none")]));
}

function declareForm() {
  const form = el("form", { class: "place", id: "declare-form" },
    el("label", { for: "kind" }, "类型 / kind"),
    el("select", { id: "kind" }, ...Object.entries(KINDS).map(([value, label]) => el("option", { value }, label))),
    el("label", { for: "title" }, "标题 / title"), el("input", { id: "title", required: true, maxlength: 500 }),
    el("label", { for: "notice" }, "致居民通知（可选）/ notice to residents (optional)"),
    el("textarea", { id: "notice", maxlength: 500, rows: 3 }),
    el("fieldset", {}, el("legend", {}, "社区 / communities"),
      ...me.communities.map((c) => el("label", {}, el("input", { type: "checkbox", name: "community", value: c }), ` ${c}`))),
    el("div", { class: "actions" }, el("button", { class: "primary", type: "submit" }, "启动应急 / Declare")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = [...form.querySelectorAll("input[name=community]:checked")].map((box) => box.value);
    if (!chosen.length) { problem("请选择社区 / choose at least one community"); return; }
    try {
      await api("/declarations", { method: "POST", body: { by: me.name,
        kind: form.querySelector("#kind").value, title: form.querySelector("#title").value.trim(), communities: chosen,
        notice_zh: form.querySelector("#notice").value.trim() || undefined } });
      problem("");
      form.reset();
      await refresh();
    } catch (error) { problem(error.message); }
  });
  document.getElementById("declare").replaceChildren(form);
}

async function refresh() {
  try {
    const [rows, open, declared] = await Promise.all([
      api("/communities"), api("/alerts?active=true&limit=100"), api("/declarations")]);
    communities(rows);
    alerts(open);
    declarations(declared);
    await offline(rows);
  } catch (error) { problem(error.message); }
}

async function start() {
  me = await api("/auth/me");
  document.getElementById("me").textContent = `${me.name} · ${me.role_zh}`;
  document.getElementById("logout").addEventListener("click", logout);
  declareForm();
  await refresh();
  setInterval(refresh, 10_000);
}

start().catch((error) => problem(error.message));
