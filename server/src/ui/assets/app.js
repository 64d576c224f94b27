// zoocore's web UI: a lazily expanded znode tree, a node view, search by
// path prefix. Every call goes to /ui/api/ on this admin server, which makes
// it on this browser's ZooKeeper session. The open node is in the URL:
// /ui/#/brokers/ids/7.
"use strict";

const PAGE = 100;
const state = { csrf: "", readOnly: false, selected: null, view: "text", events: null, watched: "" };

// A session this page no longer has (the server restarted or dropped it):
// ask for a new one and try once more.
function sessionLost(status, body) {
  return status === 403 && (body.error === "no UI session" || body.error === "missing or wrong CSRF token");
}

async function newSession() {
  const response = await fetch("/ui/api/session", { credentials: "same-origin" });
  const session = await response.json();
  if (!response.ok) throw new Error(session.error || response.statusText);
  state.csrf = session.csrf;
  state.readOnly = session.readOnly;
  showIdentities(session);
  return session;
}

async function call(url, init, retried) {
  const response = await fetch(url, init());
  const body = await response.json();
  if (!response.ok) {
    if (!retried && sessionLost(response.status, body)) {
      await newSession();
      return call(url, init, true);
    }
    const error = new Error(body.error || response.statusText);
    error.body = body;
    throw error;
  }
  return body;
}

async function api(name, params) {
  const query = new URLSearchParams(params || {}).toString();
  return call(`/ui/api/${name}${query ? "?" + query : ""}`, () => ({ credentials: "same-origin" }));
}

// A change: POST with this browser's CSRF token.
async function post(name, body) {
  return call(`/ui/api/${name}`, () => ({
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Zoocore-Csrf": state.csrf },
    body: JSON.stringify(body),
  }));
}

function encodeText(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function parentOf(path) {
  const at = path.lastIndexOf("/");
  return at <= 0 ? "/" : path.slice(0, at);
}

// Lists a node's children again (after a create or delete, or a change
// pushed by the server), if it is open: as many as were shown, and the
// nodes below it that were expanded stay expanded.
async function refreshChildren(path) {
  const item = itemFor(path);
  if (!item) return;
  const toggle = item.querySelector(".toggle");
  toggle.disabled = false;
  const list = item.querySelector(":scope > ul");
  if (!list) return;
  const shown = list.querySelectorAll(":scope > li[data-path]").length;
  const expanded = Array.from(item.querySelectorAll("li[data-path]"))
    .filter((li) => li.querySelector(":scope > ul"))
    .map((li) => li.dataset.path);
  collapse(item);
  await expand(item);
  for (let more = moreButton(item); more && item.querySelectorAll(":scope > ul > li[data-path]").length < shown;
       more = moreButton(item)) {
    await more.loadNext();
  }
  for (const path of expanded) {
    const below = itemFor(path);
    if (below) await expand(below);
  }
}

function moreButton(item) {
  return item.querySelector(":scope > ul > .more");
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function childPath(parent, name) {
  return parent === "/" ? "/" + name : parent + "/" + name;
}

function nodeHref(path) {
  return "#" + path.split("/").map(encodeURIComponent).join("/");
}

function pathFromHash() {
  const raw = location.hash.slice(1);
  if (!raw || raw === "/") return "/";
  return raw.split("/").map(decodeURIComponent).join("/");
}

// ---------------------------------------------------------------- tree

function treeItem(path, name, numChildren, ephemeral) {
  const toggle = el("button", {
    class: "toggle",
    "aria-label": "expand " + path,
    "aria-expanded": "false",
  }, "▸");
  toggle.disabled = numChildren === 0;
  const link = el("a", { class: "name" + (ephemeral ? " ephemeral" : ""), href: nodeHref(path) }, name);
  const item = el("li", { "data-path": path }, el("div", { class: "row" }, toggle, link));
  toggle.addEventListener("click", () => toggleItem(item));
  return item;
}

function itemFor(path) {
  return document.querySelector(`#tree li[data-path="${CSS.escape(path)}"]`);
}

async function toggleItem(item) {
  if (item.querySelector(":scope > ul")) {
    collapse(item);
  } else {
    await expand(item);
  }
}

function collapse(item) {
  const list = item.querySelector(":scope > ul");
  if (list) list.remove();
  const toggle = item.querySelector(".toggle");
  toggle.textContent = "▸";
  toggle.setAttribute("aria-expanded", "false");
  watchShown();
}

async function expand(item) {
  if (item.querySelector(":scope > ul")) return;
  const list = el("ul");
  item.append(list);
  const toggle = item.querySelector(".toggle");
  toggle.textContent = "▾";
  toggle.setAttribute("aria-expanded", "true");
  await loadPage(item, list, 0);
  watchShown();
}

// Appends one page of children to `list`, and a button for the next page.
async function loadPage(item, list, offset) {
  const path = item.dataset.path;
  let page;
  try {
    page = await api("children", { path, offset, limit: PAGE });
  } catch (e) {
    list.append(el("li", { class: "error" }, e.message));
    return;
  }
  for (const child of page.children) {
    list.append(treeItem(childPath(path, child.name), child.name, child.numChildren, child.ephemeral));
  }
  const next = offset + page.children.length;
  if (next < page.total) {
    const more = el("button", { class: "more" }, `more (${page.total - next} left)`);
    more.loadNext = async () => {
      more.remove();
      await loadPage(item, list, next);
    };
    more.addEventListener("click", more.loadNext);
    list.append(more);
  }
  markSelected();
}

// Expands the tree down to `path`, paging through a parent's children
// until the next step shows.
async function reveal(path) {
  let item = itemFor("/");
  await expand(item);
  const names = path === "/" ? [] : path.slice(1).split("/");
  let current = "/";
  for (const name of names) {
    await expand(item);
    current = childPath(current, name);
    let found = itemFor(current);
    while (!found) {
      const more = item.querySelector(":scope > ul > .more");
      if (!more) break;
      await more.loadNext();
      found = itemFor(current);
    }
    if (!found) return;
    item = found;
  }
  item.scrollIntoView({ block: "nearest" });
}

function markSelected() {
  for (const link of document.querySelectorAll("#tree .name.selected")) link.classList.remove("selected");
  const item = state.selected && itemFor(state.selected);
  if (item) item.querySelector(".name").classList.add("selected");
}

// ---------------------------------------------------------------- node

function decodeData(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function render(bytes, view) {
  if (view === "hex") {
    const lines = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const row = Array.from(bytes.slice(i, i + 16));
      const hex = row.map((b) => b.toString(16).padStart(2, "0")).join(" ");
      const ascii = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(i.toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + "  " + ascii);
    }
    return lines.join("\n");
  }
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  if (view === "json") {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (e) {
      return "not JSON: " + e.message;
    }
  }
  return text;
}

function sizeText(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1024 / 1024).toFixed(1) + " MiB";
}

function time(ms) {
  return ms === 0 ? "0" : new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC") + ` (${ms})`;
}

function statTable(stat) {
  const rows = [
    ["czxid", stat.czxid], ["ctime", time(stat.ctime)],
    ["mzxid", stat.mzxid], ["mtime", time(stat.mtime)],
    ["pzxid", stat.pzxid], ["cversion", stat.cversion],
    ["dataVersion", stat.version], ["aclVersion", stat.aversion],
    ["ephemeralOwner", stat.ephemeralOwner], ["dataLength", stat.dataLength],
    ["numChildren", stat.numChildren],
  ];
  return el("table", { id: "stat" }, ...rows.map(([k, v]) =>
    el("tr", { "data-field": k }, el("th", {}, k), el("td", { class: "mono" }, String(v)))));
}

function aclTable(acl) {
  return el("table", { id: "acl" },
    el("tr", {}, el("th", {}, "scheme"), el("th", {}, "id"), el("th", {}, "permissions")),
    ...acl.map((a) => el("tr", {}, el("td", {}, a.scheme), el("td", { class: "mono" }, a.id),
      el("td", { class: "mono" }, a.perms))));
}

async function showNode(path) {
  state.selected = path;
  markSelected();
  watchShown();
  const pane = document.getElementById("node");
  let node;
  try {
    node = await api("node", { path });
  } catch (e) {
    pane.replaceChildren(el("h1", { id: "node-path" }, path), el("p", { class: "error", id: "node-error" }, e.message));
    return;
  }
  if (state.selected !== path) return;
  const parts = [el("h1", { id: "node-path" }, path)];
  if (node.data !== undefined) {
    const bytes = decodeData(node.data);
    const pre = el("pre", { id: "node-data" });
    const buttons = ["text", "json", "hex"].map((view) => {
      const b = el("button", { "data-view": view, "aria-pressed": String(view === state.view) }, view);
      b.addEventListener("click", () => {
        state.view = view;
        for (const other of buttons) other.setAttribute("aria-pressed", String(other === b));
        pre.textContent = render(bytes, view);
      });
      return b;
    });
    pre.textContent = render(bytes, state.view);
    parts.push(el("h2", {}, "Data"),
      el("div", { class: "views" }, ...buttons, el("span", { class: "size", id: "data-size" }, sizeText(bytes.length))),
      pre);
  } else {
    parts.push(el("h2", {}, "Data"), el("p", { class: "error", id: "data-error" }, node.dataError));
  }
  parts.push(el("h2", {}, "Stat"), statTable(node.stat));
  if (node.stat.ephemeralOwner !== "0x0") {
    parts.push(el("p", { id: "ephemeral-owner" }, "Ephemeral: owned by session " + node.stat.ephemeralOwner));
  }
  parts.push(el("h2", {}, "ACL"), node.acl ? aclTable(node.acl) : el("p", { class: "error" }, node.aclError));
  if (!state.readOnly) parts.push(...editors(path, node));
  pane.replaceChildren(...parts);
  state.dirty = false;
  pane.addEventListener("input", () => { state.dirty = true; }, { once: true });
}

// ---------------------------------------------------------------- edits

function editors(path, node) {
  const out = [];
  const message = el("p", { id: "edit-message" });
  if (node.data !== undefined) {
    const text = el("textarea", { id: "edit-data", rows: "6" });
    text.value = new TextDecoder().decode(decodeData(node.data));
    let version = node.stat.version;
    const save = el("button", { id: "save-data" }, "Save data");
    save.addEventListener("click", async () => {
      try {
        await post("set", { path, data: encodeText(text.value), version });
        await showNode(path);
        document.getElementById("edit-message").textContent = "saved";
      } catch (e) {
        if (e.body && e.body.error === "BadVersion" && e.body.stat && e.body.data !== undefined) {
          // Someone else wrote first: show what is there now; saving again
          // overwrites it at its new version.
          version = e.body.stat.version;
          document.getElementById("node-data").textContent = render(decodeData(e.body.data), state.view);
          message.textContent = `BadVersion: the node changed since it was read (now version ${version}); its data is shown above`;
          message.className = "error";
        } else {
          message.textContent = e.message;
          message.className = "error";
        }
      }
    });
    out.push(el("h2", {}, "Edit"), text, el("div", { class: "actions" }, save,
      el("span", { class: "note" }, `at version ${node.stat.version}`)));
  }
  out.push(message);

  // Create a child.
  const name = el("input", { id: "create-name", placeholder: "child name" });
  const mode = el("select", { id: "create-mode" },
    ...["persistent", "persistent_sequential", "container", "ttl", "ttl_sequential", "ephemeral", "ephemeral_sequential"]
      .map((m) => el("option", { value: m }, m.replace("_", " "))));
  const ttl = el("input", { id: "create-ttl", type: "number", min: "1", placeholder: "TTL ms", hidden: "" });
  const data = el("input", { id: "create-data", placeholder: "data (text)" });
  const warning = el("p", { id: "ephemeral-warning", class: "note", hidden: "" },
    "An ephemeral node belongs to this UI's session: it is deleted when that session ends " +
    "(the browser's UI session idle for 30 s, or the server restarting).");
  mode.addEventListener("change", () => {
    ttl.hidden = !mode.value.startsWith("ttl");
    warning.hidden = !mode.value.startsWith("ephemeral");
  });
  const create = el("button", { id: "create" }, "Create");
  create.addEventListener("click", async () => {
    const body = { path: childPath(path, name.value), data: encodeText(data.value), mode: mode.value };
    if (mode.value.startsWith("ttl")) body.ttl = Number(ttl.value);
    try {
      const made = await post("create", body);
      await refreshChildren(path);
      location.hash = nodeHref(made.path);
    } catch (e) {
      message.textContent = e.message;
      message.className = "error";
    }
  });
  out.push(el("h2", {}, "Create a child"), el("div", { class: "actions" }, name, mode, ttl, data, create), warning);

  // Delete, with confirmation.
  if (path !== "/") {
    const remove = el("button", { id: "delete" }, "Delete");
    const removeAll = el("button", { id: "delete-recursive" }, "Delete with all children");
    const doDelete = async (recursive) => {
      const what = recursive ? `${path} and everything under it` : path;
      if (!confirm(`Delete ${what}?`)) return;
      try {
        await post("delete", { path, version: recursive ? -1 : node.stat.version, recursive });
        await refreshChildren(parentOf(path));
        location.hash = nodeHref(parentOf(path));
      } catch (e) {
        message.textContent = e.message;
        message.className = "error";
      }
    };
    remove.addEventListener("click", () => doDelete(false));
    removeAll.addEventListener("click", () => doDelete(true));
    out.push(el("h2", {}, "Delete"), el("div", { class: "actions" }, remove, removeAll));
  }

  // ACL, one scheme:id:perms per line.
  if (node.acl) {
    const acl = el("textarea", { id: "edit-acl", rows: "3" });
    acl.value = node.acl.map((a) => `${a.scheme}:${a.id}:${a.perms}`).join("\n");
    const saveAcl = el("button", { id: "save-acl" }, "Save ACL");
    saveAcl.addEventListener("click", async () => {
      const entries = acl.value.split("\n").map((l) => l.trim()).filter((l) => l).map((line) => {
        const first = line.indexOf(":");
        const last = line.lastIndexOf(":");
        return { scheme: line.slice(0, first), id: line.slice(first + 1, last), perms: line.slice(last + 1) };
      });
      try {
        await post("acl", { path, acl: entries, version: node.stat.aversion });
        await showNode(path);
      } catch (e) {
        message.textContent = e.message;
        message.className = "error";
      }
    });
    out.push(el("h2", {}, "Set ACL"), acl, el("div", { class: "actions" }, saveAcl));
  }
  return out;
}

async function addAuth(text) {
  const message = document.getElementById("auth-message");
  try {
    const session = await post("auth", { scheme: "digest", auth: text });
    showIdentities(session);
    message.textContent = "";
    await route();
  } catch (e) {
    message.textContent = e.message;
  }
}

function showIdentities(session) {
  document.getElementById("identity").textContent = session.identities.length
    ? session.identities.map((i) => `${i.scheme}:${i.id}`).join(", ")
    : "anonymous";
}

// ---------------------------------------------------------------- live

// One server-sent event stream watches what the page shows: the open node
// and every expanded one. It is opened again when that set changes.
function watchShown() {
  // Expanding along a deep link changes the set many times in a row: one
  // stream for where it ends.
  clearTimeout(state.watchTimer);
  state.watchTimer = setTimeout(openStream, 100);
}

function openStream() {
  const paths = new Set();
  if (state.selected) paths.add(state.selected);
  for (const item of document.querySelectorAll("#tree li[data-path]")) {
    if (item.querySelector(":scope > ul")) paths.add(item.dataset.path);
  }
  const list = Array.from(paths).sort().slice(0, 64);
  const key = list.join("\n");
  if (key === state.watched && state.events && state.events.readyState !== EventSource.CLOSED) return;
  state.watched = key;
  if (state.events) state.events.close();
  const query = new URLSearchParams(list.map((p) => ["path", p])).toString();
  const events = new EventSource(`/ui/api/events?${query}`);
  state.events = events;
  events.addEventListener("message", (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "Watching") {
      if (state.events === events) document.body.dataset.watching = key;
    } else {
      changed(event);
    }
  });
  // A refused stream (the session was dropped) closes for good: get a new
  // session and open it again.
  events.addEventListener("error", () => {
    if (events.readyState !== EventSource.CLOSED || state.events !== events) return;
    setTimeout(async () => {
      if (state.events !== events) return;
      try {
        await newSession();
      } catch (e) {
        return;
      }
      state.watched = "";
      openStream();
    }, 2000);
  });
}

async function changed(event) {
  document.body.dataset.lastEvent = `${event.type} ${event.path}`;
  if (event.type === "NodeChildrenChanged") await refreshChildren(event.path);
  if (event.path === state.selected) {
    // Keep what the user has typed: say the node changed instead.
    if (state.dirty) {
      const message = document.getElementById("edit-message");
      if (message) message.textContent = "changed on the server since it was read; open the node again to see it";
    } else {
      await showNode(event.path);
    }
  }
}

// ---------------------------------------------------------------- search

async function search(prefix) {
  const box = document.getElementById("search-results");
  if (!prefix.startsWith("/")) prefix = "/" + prefix;
  let found;
  try {
    found = await api("search", { prefix });
  } catch (e) {
    box.replaceChildren(el("div", { class: "note error" }, e.message));
    box.hidden = false;
    return;
  }
  const links = found.matches.map((p) => el("a", { href: nodeHref(p), class: "match" }, p));
  const note = found.total > found.matches.length
    ? el("div", { class: "note" }, `${found.total - found.matches.length} more; type more of the name`)
    : found.total === 0 ? el("div", { class: "note" }, "no match") : null;
  box.replaceChildren(...links, note);
  box.hidden = false;
}

// ---------------------------------------------------------------- server

async function adminCommand(name) {
  const response = await fetch(`/commands/${name}`, { credentials: "same-origin" });
  const body = await response.json();
  if (body.error) throw new Error(body.error);
  return body;
}

function latencyChart(latency) {
  // One bar per power-of-two bucket that has requests, height by share.
  const bars = [];
  latency.counts.forEach((count, i) => {
    const upper = i < latency.boundsMicros.length ? latency.boundsMicros[i] : Infinity;
    bars.push({ upper, count });
  });
  const used = bars.filter((b) => b.count > 0);
  const first = bars.findIndex((b) => b.count > 0);
  const last = bars.length - 1 - [...bars].reverse().findIndex((b) => b.count > 0);
  const shown = used.length ? bars.slice(first, last + 1) : [];
  const max = Math.max(1, ...shown.map((b) => b.count));
  const width = 640, height = 180, pad = 28;
  const step = shown.length ? (width - pad) / shown.length : 0;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("id", "latency");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height + 40);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "request latency histogram");
  const label = (us) => (us === Infinity ? "more" : us >= 1000 ? `${us / 1000} ms` : `${us} µs`);
  shown.forEach((b, i) => {
    const h = Math.max(1, Math.round((b.count / max) * height));
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", pad + i * step + 2);
    rect.setAttribute("y", height - h);
    rect.setAttribute("width", Math.max(1, step - 4));
    rect.setAttribute("height", h);
    rect.setAttribute("fill", "#1f6feb");
    rect.setAttribute("data-count", b.count);
    const title = document.createElementNS(ns, "title");
    title.textContent = `≤ ${label(b.upper)}: ${b.count} requests`;
    rect.append(title);
    svg.append(rect);
    if (i % 2 === 0 || shown.length < 12) {
      const text = document.createElementNS(ns, "text");
      text.setAttribute("x", pad + i * step + step / 2);
      text.setAttribute("y", height + 14);
      text.setAttribute("font-size", "10");
      text.setAttribute("text-anchor", "middle");
      text.textContent = label(b.upper);
      svg.append(text);
    }
  });
  return svg;
}

function table(id, headings, rows) {
  return el("table", { id },
    el("tr", {}, ...headings.map((h) => el("th", {}, h))),
    ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", { class: "mono" }, String(c))))));
}

async function showServer() {
  const pane = document.getElementById("node");
  let overview, monitor;
  try {
    [overview, monitor] = await Promise.all([adminCommand("zoocore_server"), adminCommand("monitor")]);
  } catch (e) {
    pane.replaceChildren(el("p", { class: "error" }, e.message));
    return;
  }
  if (location.hash !== "#server") return;
  const parts = [el("h1", {}, "Server"), el("p", {}, "Mode: ", el("strong", { id: "server-mode" }, overview.mode))];
  if (overview.members.length) {
    parts.push(el("h2", {}, "Ensemble"), table("members", ["id", "host", "role", "lag (entries)", "lag (bytes)", "lag (ms)"],
      overview.members.map((m) => [m.id + (m.me ? " (this)" : ""), m.host, m.observer ? "observer" : "voter",
        m.lagEntries ?? "-", m.lagBytes ?? "-", m.lagMs ?? "-"])));
  }
  parts.push(el("h2", {}, "Request latency since start"), latencyChart(overview.latency));
  parts.push(el("h2", {}, "Shards"), table("shards", ["shard", "sessions", "watches", "received", "sent", "outstanding", "commit queue"],
    overview.shards.map((s) => [s.shard, s.sessions, s.watches, s.received, s.sent, s.outstanding, s.commitQueue])));
  const figures = Object.entries(monitor).filter(([k]) => k !== "command" && k !== "error");
  parts.push(el("h2", {}, "mntr"), table("mntr", ["figure", "value"], figures));
  pane.replaceChildren(...parts);
}

// ---------------------------------------------------------------- start

async function route() {
  document.getElementById("search-results").hidden = true;
  if (state.refresh) clearTimeout(state.refresh);
  state.refresh = null;
  if (location.hash === "#server") {
    state.selected = null;
    markSelected();
    // Each refresh gathers every shard's view: one at a time, 5 s apart.
    const again = async () => {
      await showServer();
      if (location.hash === "#server") state.refresh = setTimeout(again, 5000);
    };
    await again();
    return;
  }
  const path = pathFromHash();
  await Promise.all([reveal(path), showNode(path)]);
}

async function start() {
  await newSession();
  const authForm = document.getElementById("auth");
  authForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("auth-input");
    addAuth(input.value);
    input.value = "";
  });
  const rootList = el("ul");
  rootList.append(treeItem("/", "/", 1, false));
  document.getElementById("tree").replaceChildren(rootList);
  const input = document.getElementById("search-input");
  document.getElementById("search").addEventListener("submit", (e) => {
    e.preventDefault();
    search(input.value.trim());
  });
  window.addEventListener("hashchange", route);
  await route();
  document.body.dataset.ready = "true";
}

start();
