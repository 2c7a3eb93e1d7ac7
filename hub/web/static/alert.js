// One alert: what, where, the readings of its sensor around it with the set point drawn, and the audited timeline
// (who took which step, when, through which channel; escalations and upgrades included).
import { api, el, STATES, when } from "/app/static/api.js";
import { chart } from "/app/static/chart.js";

function showTimeline(trail) {
  document.getElementById("timeline").replaceChildren(...trail.map((t) =>
    el("li", {},
      el("time", {}, when(t.time)),
      `${t.from_state ? STATES[t.from_state] || t.from_state : "—"} → ${STATES[t.to_state] || t.to_state}`,
      ` · ${t.by}（${t.channel}）`,
      t.note ? el("div", { class: "facts" }, t.note) : "")));
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
        el("span", { class: "what" }, `${alert.kind_zh} / ${alert.kind_en} · ${alert.rule_zh}`),
        el("span", { class: "state" }, STATES[alert.state] || alert.state)),
      el("div", { class: "where" }, alert.location),
      el("div", { class: "facts" }, `${alert.sensor} · ${value}`),
      el("div", { class: "facts" }, `依据 / source: ${alert.source}`),
      el("div", { class: "facts" }, `开始 / opened ${when(alert.opened_at)}` +
        (alert.next_deadline ? ` · 下一时限 / next deadline ${when(alert.next_deadline)}` : ""))));
  showTimeline(trail);
  const me = await api("/auth/me");
  const form = document.getElementById("comment");
  form.onsubmit = async (event) => {
    event.preventDefault();
    const text = form.querySelector("textarea").value.trim();
    if (!text) return;
    try {
      await api(`/alerts/${encodeURIComponent(id)}/comment`, { method: "POST", body: { by: me.person || me.name, text } });
      form.querySelector("textarea").value = "";
      showTimeline(await api(`/alerts/${encodeURIComponent(id)}/transitions`));
    } catch (error) {
      document.getElementById("problem").replaceChildren(el("p", { class: "banner error", role: "alert" }, error.message));
    }
  };
  const opened = new Date(alert.opened_at).getTime();
  const end = Math.min(Date.now(), opened + 12 * 3600_000);
  try {
    const buckets = await api(`/readings/buckets?sensor=${encodeURIComponent(alert.sensor)}&width=5m` +
      `&start=${end - 24 * 3600_000}&end=${end + 1}`);
    const limits = alert.threshold === null ? [] : [{ value: alert.threshold, label: `阈值 ${alert.threshold} ${alert.unit}` }];
    const marks = [{ time: new Date(alert.opened_at).getTime(), label: "告警 / alert" }];
    document.getElementById("chart").replaceChildren(chart(buckets.buckets, { limits, marks, unit: alert.unit }));
  } catch (error) {
    document.getElementById("chart").replaceChildren(el("p", { class: "facts" }, error.message));
  }
}

main().catch((error) =>
  document.getElementById("problem").replaceChildren(el("p", { class: "banner error", role: "alert" }, error.message)));
