// The grid manager's alert inbox: the alerts in the caller's scope, most severe first, each with the one button
// for its next step (接单, 出发, 到场, 处置完成 …), updated live from /api/v1/stream with sound and vibration.
import { api, apiAll, ago, el, logout, reconcile, STATES, when } from "/app/static/api.js";

const ACTIVE = ["open", "acknowledged", "en_route", "on_site"];
const SEVERITY = { I: 0, II: 1, III: 2, IV: 3 };
const NEXT = {
  open: { path: "acknowledge", label: "接单 / Take it" },
  acknowledged: { path: "en-route", label: "出发 / On my way" },
  en_route: { path: "on-site", label: "到场 / On site" },
  on_site: { path: "resolve", label: "处置完成 / Resolved", note: true },
  resolved: { path: "verify", label: "核实 / Verify" },
  verified: { path: "close", label: "关闭 / Close" },
};

const alerts = new Map();
const drafts = new Map();
const cards = new Map();  // alert id → { shown: the alert as its card shows it (JSON), node }
let me = null;
let audio = null;

function by() {
  return me.person || me.name;
}

function problem(text) {
  const box = document.getElementById("problem");
  box.replaceChildren(text ? el("p", { class: "banner error", role: "alert" }, text) : "");
}

async function step(alert, next, note) {
  const body = { by: by() };
  if (next.note || note) body.note = note || "";
  try {
    const changed = await api(`/alerts/${encodeURIComponent(alert.id)}/${next.path}`, { method: "POST", body });
    remember(changed);
    drafts.delete(changed.id);
    problem("");
    render();
  } catch (error) {
    problem(`${next.label}：${error.message}`);
  }
}

// The newer of what is known and what arrived: a step's answer and the stream's events for the same alert race,
// and an event of an earlier step arriving after the answer must not turn the card back (出发 after 到场).
function remember(alert) {
  const known = alerts.get(alert.id);
  if (known && known.updated_at && alert.updated_at && Date.parse(alert.updated_at) < Date.parse(known.updated_at)) {
    return false;
  }
  alerts.set(alert.id, alert);
  return true;
}

// An alert's card, built again only when the alert changed: an unchanged card keeps its node (see reconcile).
function cardOf(alert) {
  const shown = JSON.stringify(alert);
  const known = cards.get(alert.id);
  if (known && known.shown === shown) return known.node;
  const node = card(alert);
  cards.set(alert.id, { shown, node });
  return node;
}

function card(alert) {
  const next = NEXT[alert.state];
  const actions = el("div", { class: "actions" });
  if (next) {
    if (next.note) {
      const note = el("textarea", { rows: 2, placeholder: "现场情况与处置 / what was found and done", "aria-label": "note" });
      note.value = drafts.get(alert.id) || "";  // live updates re-render the list: a note being typed stays
      note.addEventListener("input", () => drafts.set(alert.id, note.value));
      const button = el("button", { class: "primary", type: "button" }, next.label);
      button.addEventListener("click", () => {
        if (!note.value.trim()) {
          note.focus();
          problem("请填写处置说明 / a note is required to resolve");
          return;
        }
        button.disabled = true;
        step(alert, next, note.value.trim()).finally(() => (button.disabled = false));
      });
      actions.append(note, button);
    } else {
      const button = el("button", { class: "primary", type: "button" }, next.label);
      button.addEventListener("click", () => {
        button.disabled = true;
        step(alert, next).finally(() => (button.disabled = false));
      });
      actions.append(button);
    }
  }
  actions.append(el("a", { class: "button", href: `/app/alerts/${encodeURIComponent(alert.id)}` }, "详情 / Details"));
  const value = `${alert.value} ${alert.unit}` + (alert.threshold === null ? "" : ` (阈值 ${alert.threshold})`);
  const escalated = alert.escalation_level > 0 ? ` · 已升级至第 ${alert.escalation_level} 级 / escalated` : "";
  const deadline = !alert.next_deadline ? ""
    : alert.state === "open" ? `无人接单将于 ${when(alert.next_deadline)} 升级 / escalates at ${when(alert.next_deadline)} if nobody takes it`
    : alert.state === "acknowledged" || alert.state === "en_route" ? `到场时限 / on site by ${when(alert.next_deadline)}`
    : "";
  return el(
    "article",
    { class: `card grade-${alert.grade}`, id: `alert-${alert.id}`, "data-state": alert.state },
    el(
      "div",
      { class: "top" },
      el("span", { class: `grade ${alert.grade}` }, alert.grade_label_zh || alert.grade),
      el("span", { class: "what" }, `${alert.kind_zh} · ${alert.rule_zh}`),
      el("span", { class: "state" }, STATES[alert.state] || alert.state),
    ),
    el("div", { class: "where" }, alert.location),
    el("div", { class: "facts" }, `${value} · ${when(alert.opened_at)}（${ago(alert.opened_at)}）${escalated}`),
    deadline ? el("div", { class: "facts deadline" }, deadline) : "",
    actions,
  );
}

function sorted(states) {
  return [...alerts.values()]
    .filter((a) => states.includes(a.state))
    .sort((a, b) => SEVERITY[a.grade] - SEVERITY[b.grade] || b.opened_at.localeCompare(a.opened_at));
}

let freshIds = new Set();

const NOTHING = el("p", { class: "empty" }, "暂无待处理告警 / nothing to handle");

function render() {
  for (const id of cards.keys()) if (!alerts.has(id)) cards.delete(id);
  const active = sorted(ACTIVE).map(cardOf);
  for (const node of active) if (freshIds.has(node.id.slice("alert-".length))) node.classList.add("fresh");
  reconcile(document.getElementById("active"), active.length ? active : [NOTHING]);
  reconcile(document.getElementById("resolved"), sorted(["resolved"]).map(cardOf));
  freshIds = new Set();
  document.title = `${active.length ? `(${active.length}) ` : ""}告警 / Alerts — 安居 Anju`;
}

function ring(grade) {
  if (navigator.vibrate) navigator.vibrate(grade === "IV" ? [200] : [400, 150, 400, 150, 400]);
  if (!audio) return;
  const tone = audio.createOscillator();
  const gain = audio.createGain();
  tone.frequency.value = grade === "I" || grade === "II" ? 1046 : 784;
  gain.gain.setValueAtTime(0.3, audio.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.8);
  tone.connect(gain).connect(audio.destination);
  tone.start();
  tone.stop(audio.currentTime + 0.8);
}

async function load() {
  // The inbox's two lists: what is still to handle (the index answers it), and resolved alerts awaiting a check.
  const [active, resolved] = await Promise.all([apiAll("/alerts?active=true&limit=500"), api("/alerts?state=resolved&limit=100")]);
  const list = [...active, ...resolved];
  alerts.clear();
  for (const alert of list) alerts.set(alert.id, alert);
  render();
}

function listen() {
  const status = document.getElementById("status");
  const source = new EventSource("/api/v1/stream?sensors=false");
  source.addEventListener("open", () => {
    status.className = "status live";
    status.textContent = "实时 / live";
  });
  source.addEventListener("error", () => {
    status.className = "status down";
    status.textContent = "连接中断，正在重连… / reconnecting…";
  });
  source.addEventListener("alert", (message) => {
    const change = JSON.parse(message.data);
    const known = alerts.has(change.alert.id);
    if (!remember(change.alert)) return;
    if (!known || change.transition.from_state === null) {
      freshIds.add(change.alert.id);
      ring(change.alert.grade);
    }
    render();
  });
  source.addEventListener("reset", () => {
    source.close();
    load().then(listen, (error) => problem(error.message));
  });
}

async function main() {
  document.getElementById("logout").addEventListener("click", logout);
  document.getElementById("sound").addEventListener("click", (event) => {
    audio = audio || new AudioContext();
    event.target.textContent = "提醒音已开启 / Sound on ✓";
    ring("IV");
  });
  me = await api("/auth/me");
  document.getElementById("who").textContent = `${me.name}（${me.role_zh}）`;
  await load();
  listen();
}

main().catch((error) => problem(error.message));
