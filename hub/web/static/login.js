// Password login into a browser session (HttpOnly cookie + CSRF cookie), then back to the page that asked.
import { el } from "/app/static/api.js";

function target() {
  const next = new URLSearchParams(location.search).get("next") || "/app/";
  return next.startsWith("/app/") && !next.startsWith("//") ? next : "/app/";
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const button = form.querySelector("button");
  const box = document.getElementById("problem");
  button.disabled = true;
  box.replaceChildren();
  try {
    const response = await fetch("/api/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ username: form.username.value.trim(), password: form.password.value, mode: "cookie" }),
    });
    if (response.ok) {
      location.assign(target());
      return;
    }
    const data = await response.json().catch(() => ({}));
    const wait = response.headers.get("Retry-After");
    const detail = typeof data.detail === "string" ? data.detail : `HTTP ${response.status}`;
    const more = wait ? `（${wait} 秒后再试 / try again in ${wait} s）` : "";
    box.replaceChildren(el("p", { class: "banner error", role: "alert" }, detail + more));
  } catch (error) {
    box.replaceChildren(el("p", { class: "banner error", role: "alert" }, error.message));
  } finally {
    button.disabled = false;
  }
});
