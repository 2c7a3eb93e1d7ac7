// What the community committee publishes to residents (Art. 43), without logging in: each notice with its
// subject's building (never a flat), and the open hazards of the register by grade.
import { el, when } from "/app/static/api.js";

async function main() {
  const response = await fetch("/api/v1/public/disclosures", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const feed = await response.json();
  const counts = Object.entries(feed.open_hazards_by_grade).filter(([, n]) => n > 0);
  document.getElementById("hazards").textContent = counts.length
    ? "在册隐患 / open hazards: " + counts.map(([grade, n]) => `${grade} 级 ${n}`).join("，")
    : "暂无在册隐患 / no open hazards";
  document.getElementById("items").replaceChildren(...(feed.items.length ? feed.items.map((item) =>
    el("article", { class: "disclosure" },
      el("h3", {}, item.grade ? el("span", { class: `grade ${item.grade}` }, item.grade) : "", " ", item.title),
      el("div", { class: "meta" }, [when(item.published_at), item.place, item.state].filter(Boolean).join(" · ")),
      el("p", {}, item.text))) : [el("p", { class: "empty" }, "暂无公示 / nothing published")]));
}

main().catch((error) => {
  document.getElementById("items").replaceChildren(el("p", { class: "banner error" }, error.message));
});
