// chunkd dashboard: plain JS over the /chunkd/v1 admin API, with the same bearer token an operator uses
// with curl. The token is kept in sessionStorage (this tab only), never in a URL.
"use strict";

const API = "/chunkd/v1";
const POLL_MS = 1000;
const FAMILIES = ["servicefabric", "graph-print", "blobblock", "tus"];
const samples = [];  // [time ms, bytesReceived]: throughput is computed here, from store-wide totals
const errors = [];
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem("chunkd.token") || ""; }

function noteError(what, detail) {
  errors.unshift(`${new Date().toLocaleTimeString()} ${what}: ${detail}`);
  errors.length = Math.min(errors.length, 20);
  $("errors").replaceChildren(...errors.map((e) => el("li", e)));
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

async function api(method, path) {
  const r = await fetch(API + path, { method, headers: { Authorization: `Bearer ${token()}` } });
  if (!r.ok) {
    let msg = r.statusText;
    try { const e = (await r.json()).error; msg = `${e.code}: ${e.message}`; } catch (_) { /* not JSON */ }
    throw new Error(`HTTP ${r.status} ${msg}`);
  }
  return r.status === 204 ? null : r.json();
}

function human(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function bar(length, ranges) {
  const box = el("span", undefined, "bar");
  if (!length) return box;
  for (const [s, e] of ranges) {
    const piece = el("i");
    piece.style.left = `${(100 * s) / length}%`;
    piece.style.width = `${(100 * (e - s)) / length}%`;
    box.append(piece);
  }
  return box;
}

function query() {
  const p = new URLSearchParams({ limit: "200" });
  if ($("family").value) p.set("family", $("family").value);
  if ($("everyone").checked) {
    p.set("all", "true");
    if ($("owner").value.trim()) p.set("owner", $("owner").value.trim());
  }
  return p;
}

function drawThroughput() {
  const c = $("throughput"), g = c.getContext("2d");
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i][0] - samples[i - 1][0]) / 1000;
    rates.push(Math.max(0, samples[i][1] - samples[i - 1][1]) / dt);
  }
  g.clearRect(0, 0, c.width, c.height);
  const top = Math.max(1, ...rates);
  g.strokeStyle = "#3a6fd8"; g.lineWidth = 2; g.beginPath();
  rates.forEach((r, i) => {
    const x = (i / 59) * c.width, y = c.height - 4 - (r / top) * (c.height - 8);
    if (i) g.lineTo(x, y); else g.moveTo(x, y);
  });
  g.stroke();
  const now = rates.length ? rates[rates.length - 1] : 0;
  $("rate").textContent = `${human(now)}/s now, peak ${human(top > 1 ? top : 0)}/s (last minute, all nodes)`;
}

function drawCounts(summary) {
  const rows = [];
  for (const [family, states] of Object.entries(summary.sessions)) {
    const cells = Object.entries(states).map(([s, n]) => `${s} ${n}`).join(", ");
    const tr = el("tr"); tr.append(el("td", family), el("td", cells)); rows.push(tr);
  }
  if (!rows.length) rows.push(el("tr", "no sessions"));
  $("counts").tBodies[0].replaceChildren(...rows);
  for (const f of Object.keys(summary.sessions)) {
    if (![...$("family").options].some((o) => o.value === f)) $("family").append(new Option(f, f));
  }
}

async function drawSessions(list) {
  const details = await Promise.all(list.map((s) => (s.state === "open" && s.length
    ? api("GET", `/sessions/${encodeURIComponent(s.id)}`).catch(() => null) : null)));
  const rows = list.map((s, i) => {
    const tr = el("tr"); tr.dataset.id = s.id;
    const d = details[i];
    const ranges = d ? d.receivedRanges : (s.state === "committed" && s.length ? [[0, s.length]] : []);
    const del = el("button", "Delete", "delete");
    del.addEventListener("click", () => remove(s));
    const recv = el("td", `${human(s.received)}${s.length == null ? "" : " / " + human(s.length)}`);
    recv.dataset.bytes = String(s.received);
    const cell = el("td"); cell.append(bar(s.length || 0, ranges));
    const act = el("td"); act.append(del);
    tr.append(el("td", s.name || s.key || s.id, "name"), el("td", s.family), el("td", s.state),
      el("td", s.owner), cell, recv, el("td", new Date(s.expiresAt).toLocaleString()), act);
    return tr;
  });
  $("sessions").tBodies[0].replaceChildren(...rows);
  const soon = list.filter((s) => s.state === "open")
    .sort((a, b) => new Date(a.expiresAt) - new Date(b.expiresAt)).slice(0, 5);
  $("expiring").replaceChildren(...soon.map((s) => {
    const mins = Math.max(0, (new Date(s.expiresAt) - Date.now()) / 60000);
    return el("li", `${s.name || s.key || s.id} (${s.family}) in ${mins.toFixed(1)} min`);
  }));
}

async function remove(s) {
  if (!window.confirm(`Cancel session ${s.name || s.id}? Staged bytes are discarded.`)) return;
  try { await api("DELETE", `/sessions/${encodeURIComponent(s.id)}`); } catch (e) { noteError("delete", e.message); }
  poll();
}

let polling = false;
async function poll() {
  if (!token() || polling) return;
  polling = true;
  try {
    const all = $("everyone").checked ? "?all=true" : "";
    const [summary, page] = await Promise.all([api("GET", `/summary${all}`), api("GET", `/sessions?${query()}`)]);
    samples.push([Date.now(), summary.bytesReceived]);
    if (samples.length > 61) samples.shift();
    drawCounts(summary); drawThroughput();
    await drawSessions(page.sessions);
  } catch (e) { noteError("refresh", e.message); } finally { polling = false; }
}

// A small tus 1.0 client (creation + PATCH loop): enough for a browser upload, resumable by HEAD.
async function tusUpload(file) {
  const chunk = 256 * 1024;
  const auth = { Authorization: `Bearer ${token()}`, "Tus-Resumable": "1.0.0" };
  const meta = `filename ${btoa(unescape(encodeURIComponent(file.name)))}`;
  const created = await fetch("/files/", { method: "POST",
    headers: { ...auth, "Upload-Length": String(file.size), "Upload-Metadata": meta } });
  if (created.status !== 201) throw new Error(`create: HTTP ${created.status} ${await created.text()}`);
  const url = created.headers.get("Location");
  let offset = 0, failures = 0;
  while (offset < file.size) {
    try {
      const r = await fetch(url, { method: "PATCH", body: file.slice(offset, offset + chunk),
        headers: { ...auth, "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" } });
      if (r.status !== 204) throw new Error(`HTTP ${r.status} ${await r.text()}`);
      offset = Number(r.headers.get("Upload-Offset")); failures = 0;
    } catch (e) {
      if (++failures > 5) throw e;
      noteError("upload (retrying)", e.message);
      await new Promise((ok) => setTimeout(ok, 1000 * failures));
      const head = await fetch(url, { method: "HEAD", headers: auth });
      offset = Number(head.headers.get("Upload-Offset") || offset);
    }
    $("upload-progress").value = offset / Math.max(1, file.size);
    $("upload-status").textContent = `${human(offset)} of ${human(file.size)}`;
  }
  $("upload-status").textContent = `${file.name}: done (${human(file.size)})`;
}

function init() {
  for (const f of FAMILIES) $("family").append(new Option(f, f));
  $("token").value = token();
  $("auth").addEventListener("submit", (ev) => {
    ev.preventDefault(); sessionStorage.setItem("chunkd.token", $("token").value.trim()); poll();
  });
  $("forget").addEventListener("click", () => { sessionStorage.removeItem("chunkd.token"); $("token").value = ""; });
  for (const id of ["family", "everyone"]) $(id).addEventListener("change", poll);
  $("owner").addEventListener("change", poll);
  $("upload").addEventListener("click", () => {
    const file = $("file").files[0];
    if (!file) return;
    tusUpload(file).catch((e) => { noteError("upload", e.message); $("upload-status").textContent = e.message; });
  });
  setInterval(poll, POLL_MS);
  poll();
}

init();
