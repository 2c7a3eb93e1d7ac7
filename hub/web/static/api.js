// The JSON API as the pages use it: the browser session cookie, the CSRF token echoed on every change, and
// problem details turned into one readable message. A lost session sends the page to the login form.

const CSRF_COOKIE = "anju_csrf";

function cookie(name) {
  const found = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function toLogin() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/app/login?next=${next}`);
}

export async function api(path, options = {}) {
  return (await request(path, options)).data;
}

// Every page of a list (`limit` + `cursor`, the next page's address in the `Link` header, hub/api/paging.py), at most
// `maxPages` of them: the whole list for a view that must show all of it (every sensor on the plan, every open
// alert), not only the first page. `key` is the field of an envelope body that holds the items (`/sensors`); the
// envelope of the first page is returned with all the items in it.
export async function apiAll(path, { key = null, maxPages = 50 } = {}) {
  let first = null;
  const items = [];
  let next = path;
  for (let page = 0; next && page < maxPages; page += 1) {
    const { data, link } = await request(next);
    if (first === null) first = data;
    items.push(...(key ? data[key] : data));
    const found = /<\/api\/v1([^>]*)>;\s*rel="next"/.exec(link || "");
    next = found ? found[1] : null;
  }
  return key ? { ...first, [key]: items } : items;
}

async function request(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = cookie(CSRF_COOKIE);
  }
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, "需要登录 / log in");
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data && (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
    throw new ApiError(response.status, detail || `HTTP ${response.status}`);
  }
  return { data, link: response.headers.get("Link") };
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

// Puts exactly `nodes` into `box`, in order, moving or removing only what differs. A node that stays is never
// detached, so a live update cannot swallow a tap in progress on it (mousedown on one node, mouseup on its
// replacement, is no click) nor take the focus or the caret from a field being typed in.
export function reconcile(box, nodes) {
  const wanted = new Set(nodes);
  for (const child of [...box.childNodes]) if (!wanted.has(child)) child.remove();
  nodes.forEach((node, index) => {
    const there = box.childNodes[index];
    if (there !== node) box.insertBefore(node, there || null);  // new, or moved because the order changed
  });
}

const TIME = new Intl.DateTimeFormat("zh-CN", {
  month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
});

export function when(iso) {
  return iso ? TIME.format(new Date(iso)) : "—";
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} 秒前`;
  if (s < 3600) return `${Math.floor(s / 60)} 分钟前`;
  if (s < 86400) return `${Math.floor(s / 3600)} 小时前`;
  return `${Math.floor(s / 86400)} 天前`;
}

export const STATES = {
  open: "待接单 / open",
  acknowledged: "已接单 / acknowledged",
  en_route: "在途 / en route",
  on_site: "已到场 / on site",
  resolved: "已处置 / resolved",
  verified: "已核实 / verified",
  closed: "已关闭 / closed",
};

export async function logout() {
  try {
    await api("/auth/logout", { method: "POST" });
  } finally {
    location.assign("/app/login");
  }
}
