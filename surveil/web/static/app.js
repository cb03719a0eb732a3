// surveil console: the alert list (live, server-sent events), the alert page with its chart, account and
// owner pages. Plain JavaScript, no external asset. The JSON API is documented in docs/console.md.
// Nanosecond timestamps (int64) are never shown from a JSON number (a double: 1708306200815287123 would read
// 1708306200815287000): the page shows the text the server made (display, time, at_text, at_iso) and
// orders by the decimal string (window_start_ns) as a BigInt.
"use strict";

const $ = (sel) => document.querySelector(sel);
const rows = new Map(); // alert_id -> summary
let source = null;
let selected = null;
let csrf = null; // the session's CSRF token (for logout, the one state change of this page)

const toLogin = () => location.replace("/console/login");

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}
function num(v) { return typeof v === "number" ? v.toLocaleString("en-US", {maximumFractionDigits: 2}) : esc(v); }
// an alert's value or threshold in its unit: amounts come as integer fen and are shown in yuan
function amount(v, unit) { return unit === "fen" && typeof v === "number" ? `${num(v / 100)} yuan` : num(v); }
function subjectLink(subject) {
  if (subject.owner) return `<a href="#/owner/${encodeURIComponent(subject.owner)}">${esc(subject.owner)}</a>`;
  return accountLink(subject.venue, subject.account);
}
function accountLink(venue, account) {
  return `<a href="#/account/${encodeURIComponent(venue)}/${encodeURIComponent(account)}">${esc(venue)}:${esc(account)}</a>`;
}
function ownerLink(owner) { return owner ? `<a href="#/owner/${encodeURIComponent(owner)}">${esc(owner)}</a>` : ""; }

async function getJSON(url) {
  const r = await fetch(url, {credentials: "same-origin"});
  if (r.status === 401) { toLogin(); throw new Error("not logged in"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `${r.status} ${url}`);
  return body;
}

function filterQuery() {
  const q = new URLSearchParams();
  for (const el of $("#filters").elements) if (el.name && el.value.trim()) q.set(el.name, el.value.trim());
  return q.toString();
}

// -- the list ---------------------------------------------------------------------------------------
function rowHTML(s) {
  return `<td>${esc(s.time)}</td><td>${esc(s.rule)}</td><td>${esc(s.subject_text)}</td>` +
    `<td class="num">${amount(s.value, s.unit)}</td><td class="sev-${esc(s.severity)}">${esc(s.severity)}</td>` +
    `<td class="status-${esc(s.status)}">${esc(s.status)}</td>`;
}

// newest first, exactly: by the ns as a BigInt (from its string; a number if an older server sent none)
const startNs = (s) => BigInt(s.window_start_ns ?? Math.trunc(s.window_start));
function newestFirst(a, b) {
  const x = startNs(a), y = startNs(b);
  return (y > x) - (y < x) || a.rule.localeCompare(b.rule) || a.subject_text.localeCompare(b.subject_text);
}

function render(newId) {
  const sorted = [...rows.values()].sort(newestFirst);
  const tbody = $("#alert-rows");
  tbody.innerHTML = "";
  for (const s of sorted) {
    const tr = document.createElement("tr");
    tr.id = "alert-" + s.alert_id;
    tr.dataset.id = s.alert_id;
    tr.dataset.rule = s.rule;
    tr.dataset.subject = s.subject_text;
    tr.innerHTML = rowHTML(s);
    if (s.alert_id === selected) tr.classList.add("selected");
    if (s.alert_id === newId) tr.classList.add("new");
    tr.addEventListener("click", () => { location.hash = "#/alert/" + s.alert_id; });
    tbody.appendChild(tr);
  }
  $("#list-note").textContent = sorted.length ? `${sorted.length} alert(s)` : "No alert matches (yet).";
}

// The stream opens first; on its "hello" (also after every automatic reconnect) the list is fetched.
// Events that arrive while the list is being fetched are kept and applied on top of it when newer than the
// list (the list's "seq"), so nothing is lost between the two.
let loading = null; // events received while the list is being fetched, or null

async function loadList() {
  connect(filterQuery());
}

async function fetchList(q) {
  loading = [];
  try {
    const data = await getJSON("/api/alerts?" + q + (q ? "&" : "") + "limit=5000");
    rows.clear();
    for (const s of data.alerts) rows.set(s.alert_id, s);
    for (const [seq, s] of loading) if (seq > data.seq) rows.set(s.alert_id, s);
    render();
  } catch (e) {
    $("#list-note").innerHTML = `<span class="warn">${esc(e.message)}</span>`;
  } finally {
    loading = null;
  }
}

function connect(q) {
  if (source) source.close();
  source = new EventSource("/api/events" + (q ? "?" + q : ""));
  source.addEventListener("hello", () => {
    $("#conn").textContent = "live";
    $("#conn").className = "conn on";
    fetchList(q);
  });
  source.addEventListener("alert", (ev) => {
    const s = JSON.parse(ev.data);
    if (loading) { loading.push([Number(ev.lastEventId), s]); return; }
    const isNew = !rows.has(s.alert_id);
    rows.set(s.alert_id, s);
    render(isNew ? s.alert_id : null);
    if (s.alert_id === selected) showAlert(s.alert_id);
  });
  source.addEventListener("recommendation", () => { if (selected) showAlert(selected); });
  source.onerror = async () => {
    $("#conn").textContent = "reconnecting…";
    $("#conn").className = "conn off";
    try { if (!(await getJSON("/api/session")).authenticated) { source.close(); toLogin(); } } catch (e) { /* offline */ }
  };
}

// -- pages ------------------------------------------------------------------------------------------
function recoList(recs) {
  if (!recs.length) return "<p class=\"note\">none</p>";
  return "<ul>" + recs.map((r) => `<li><span class="measure">${esc(r.measure)}</span>` +
    (r.duration_days ? ` (${esc(r.duration_days)} days)` : "") + ` — ${esc(r.rationale)}</li>`).join("") + "</ul>";
}

function alertTable(list) {
  if (!list.length) return "<p class=\"note\">none</p>";
  return "<table><tr><th>time</th><th>rule</th><th>subject</th><th class=\"num\">value</th><th>sev.</th><th>status</th></tr>" +
    list.map((s) => `<tr><td><a href="#/alert/${esc(s.alert_id)}">${esc(s.trading_day)} ${esc(s.time)}</a></td>` +
      `<td>${esc(s.rule)}</td><td>${esc(s.subject_text)}</td><td class="num">${amount(s.value, s.unit)}</td>` +
      `<td class="sev-${esc(s.severity)}">${esc(s.severity)}</td><td>${esc(s.status)}</td></tr>`).join("") + "</table>";
}

// the chart on the page, by alert id and status: re-rendering the same alert state keeps it (no flicker)
let shownChart = {key: null, html: ""};
const chartKey = (a) => `${a.alert_id}|${a.status}`;

async function showAlert(id) {
  selected = id;
  for (const tr of document.querySelectorAll("#alert-rows tr")) tr.classList.toggle("selected", tr.dataset.id === id);
  const d = $("#detail");
  let data;
  try { data = await getJSON("/api/alerts/" + encodeURIComponent(id)); } catch (e) {
    d.innerHTML = `<p class="warn">${esc(e.message)}</p>`; return;
  }
  if (selected !== id) return;
  const a = data.alert, ev = a.evidence || {};
  let html = `<h2 id="alert-title">${esc(a.rule)}: ${subjectLink(a.subject)}</h2>` +
    `<table class="meta"><tr><th>alert id</th><td id="alert-id">${esc(a.alert_id)}</td></tr>` +
    `<tr><th>trading day</th><td>${esc(a.trading_day)}</td></tr>` +
    (data.display ? `<tr><th>window</th><td id="alert-window">${esc(data.display.window_start)} – ${esc(data.display.window_end)}</td></tr>` : "") +
    `<tr><th>value</th><td class="num">${amount(a.value, a.unit)}</td></tr>` +
    `<tr><th>threshold</th><td class="num">${amount(a.threshold, a.unit)}</td></tr>` +
    `<tr><th>severity</th><td class="sev-${esc(a.severity)}">${esc(a.severity)}</td></tr>` +
    `<tr><th>status</th><td class="status-${esc(a.status)}">${esc(a.status)}</td></tr>` +
    (ev.owner ? `<tr><th>owner</th><td>${ownerLink(ev.owner)}</td></tr>` : "") + "</table>" +
    `<h3>Recommendations</h3>${recoList(data.recommendations)}` +
    `<h3>Chart</h3><div id="chart">${shownChart.key === chartKey(a) ? shownChart.html : "<p class=\"note\">drawing…</p>"}</div>`;
  if (ev.by_account && ev.by_account.length) {
    html += "<h3>Sell value by account (peak window)</h3><table id=\"by-account\"><tr><th>account</th><th>broker</th><th class=\"num\">value (yuan)</th><th class=\"num\">trades</th></tr>" +
      ev.by_account.map((x) => `<tr><td>${accountLink(x.venue, x.account)}</td><td>${esc(x.broker)}</td>` +
        `<td class="num">${num(x.value_fen / 100)}</td><td class="num">${num(x.trades)}</td></tr>`).join("") + "</table>";
  }
  if (ev.indexes && ev.indexes.length) {
    html += "<h3>Main indexes during the burst</h3><table><tr><th>index</th><th class=\"num\">start</th><th class=\"num\">end</th><th class=\"num\">min</th><th class=\"num\">max drop %</th></tr>" +
      ev.indexes.map((x) => `<tr><td>${esc(x.index)}</td><td class="num">${num(x.level_at_start)}</td><td class="num">${num(x.level_at_end)}</td>` +
        `<td class="num">${num(x.min_level)}</td><td class="num">${num(x.max_drop_pct)}</td></tr>`).join("") + "</table>";
  }
  // every other evidence field as the server's text (times in Asia/Shanghai to the nanosecond, exact integers)
  html += "<h3>Evidence</h3><table id=\"evidence\">" + (data.display ? data.display.evidence : []).map(([k, text]) =>
    `<tr><th>${esc(k)}</th><td>${esc(text)}</td></tr>`).join("") + "</table>";
  d.innerHTML = html;
  if (shownChart.key === chartKey(a)) return;  // a refresh (a recommendation, a repeat): keep the chart drawn
  try {
    const r = await fetch(`/api/alerts/${encodeURIComponent(id)}/chart.svg`);
    const text = await r.text();
    if (selected !== id) return;
    $("#chart").innerHTML = r.ok ? text : `<p class="warn">${esc(text)}</p>`;
    if (r.ok) shownChart = {key: chartKey(a), html: text};
  } catch (e) {
    $("#chart").innerHTML = `<p class="warn">${esc(e.message)}</p>`;
  }
}

function activityText(act) {
  if (!act) return "<p class=\"note\">no worker state available</p>";
  if (!act.held_here) {
    return `<p class="note">Held by another worker (feed partition ${esc(act.partition)}): its counts are on that worker's console.</p>`;
  }
  if (act.day_closed) {
    return `<p class="note">Feed partition ${esc(act.partition)} (this worker): no trading day open — the day's ` +
      "counts were reset at midnight (Asia/Shanghai) and start again with the next day's first message.</p>";
  }
  return `<table class="activity"><tr><th>trading day</th><td>${esc(act.day ?? "")}</td></tr>` +
    `<tr><th>orders</th><td class="num">${num(act.orders)}</td></tr><tr><th>cancels</th><td class="num">${num(act.cancels)}</td></tr>` +
    `<tr><th>orders + cancels</th><td class="num">${num(act.messages)}</td></tr>` +
    `<tr><th>feed partition</th><td>${esc(act.partition)} (this worker)</td></tr></table>`;
}

async function showAccount(venue, account) {
  selected = null;
  const d = $("#detail");
  let x;
  try { x = await getJSON(`/api/accounts/${encodeURIComponent(venue)}/${encodeURIComponent(account)}`); } catch (e) {
    d.innerHTML = `<p class="warn">${esc(e.message)}</p>`; return;
  }
  const ref = x.reference || {};
  const peak = x.peak_second
    ? `${num(x.peak_second.count)} orders+cancels at ${esc(x.peak_second.at_text ?? x.peak_second.at_iso)}`
    : "below the threshold in every second (no peak order rate alert)";
  d.innerHTML = `<h2 id="account-title">Account ${esc(venue)}:${esc(account)}</h2>` +
    `<table><tr><th>owner</th><td>${ownerLink(ref.owner)}</td></tr><tr><th>broker</th><td>${esc(ref.broker)}</td></tr>` +
    `<tr><th>peak second</th><td>${peak}</td></tr></table>` +
    `<h3>Today's counts</h3>${activityText(x.activity)}` +
    `<h3>Alerts</h3>${alertTable(x.alerts)}<h3>Recommendations</h3>${recoList(x.recommendations)}`;
}

async function showOwner(owner) {
  selected = null;
  const d = $("#detail");
  let x;
  try { x = await getJSON(`/api/owners/${encodeURIComponent(owner)}`); } catch (e) {
    d.innerHTML = `<p class="warn">${esc(e.message)}</p>`; return;
  }
  // validity on the day shown: "always" / "until further notice" for a row without a start / an end
  const validity = (a) => a.rows_today === undefined ? "" :
    `${a.valid_from ? esc(a.valid_from.slice(0, 19).replace("T", " ")) : "always"} → ` +
    `${a.valid_until ? esc(a.valid_until.slice(0, 19).replace("T", " ")) : "until further notice"}` +
    (a.rows_today > 1 ? ` (+${a.rows_today - 1} more row${a.rows_today > 2 ? "s" : ""} that day)` : "");
  const accts = x.accounts.length
    ? "<table id=\"owner-accounts\"><tr><th>account</th><th>broker</th><th>owner's account</th><th class=\"num\">orders + cancels today</th><th>peak second</th><th>held</th></tr>" +
      x.accounts.map((a) => `<tr><td>${accountLink(a.venue, a.account)}</td><td>${esc(a.broker)}</td><td>${validity(a)}</td>` +
        `<td class="num">${a.activity && a.activity.held_here ? (a.activity.day_closed ? "day closed" : num(a.activity.messages)) : ""}</td>` +
        `<td>${a.peak_second ? num(a.peak_second.count) + " at " + esc(a.peak_second.at_iso.slice(11, 19)) : "below threshold"}</td>` +
        `<td>${a.activity ? (a.activity.held_here ? "this worker" : "another worker (" + esc(a.activity.partition) + ")") : ""}</td></tr>`).join("") + "</table>"
    : "<p class=\"note\">no known account</p>";
  d.innerHTML = `<h2 id="owner-title">Owner ${esc(owner)}</h2><h3>Accounts on ${esc(x.day || "")}</h3>${accts}` +
    `<h3>Alerts</h3>${alertTable(x.alerts)}<h3>Recommendations</h3>${recoList(x.recommendations)}`;
}

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "alert" && parts[1]) return showAlert(parts[1]);
  if (parts[0] === "account" && parts[2]) return showAccount(parts[1], parts.slice(2).join("/"));
  if (parts[0] === "owner" && parts[1]) return showOwner(parts.slice(1).join("/"));
  selected = null;
}

async function logout() {
  await fetch("/api/logout", {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf}});
  toLogin();
}

async function init() {
  const s = await getJSON("/api/session");
  if (!s.authenticated) { toLogin(); return; }
  csrf = s.csrf;
  const u = s.user;
  $("#user").innerHTML = `<span id="user-name">${esc(u.name)}</span> (${esc(u.role)}${u.broker ? " " + esc(u.broker) : ""})` +
    (s.auth === "on" ? " <button id=\"logout\" type=\"button\">log out</button>" : "");
  if ($("#logout")) $("#logout").addEventListener("click", logout);
  const meta = await getJSON("/api/meta");
  const fill = (name, values) => {
    const sel = $(`#filters [name=${name}]`);
    for (const v of values) sel.insertAdjacentHTML("beforeend", `<option>${esc(v)}</option>`);
  };
  if (meta.ref_late && meta.ref_late.length) {  // reference updates that came after the events they cover
    $("#list").insertAdjacentHTML("afterbegin", "<p id=\"ref-late\" class=\"warn\">Late reference updates " +
      "(they apply from their arrival on; <code>surveil replay</code> of the day gives the as-of answer): " +
      meta.ref_late.map((u) => `${esc(u.key)} changed from ${esc(u.changed_from || "always")}, arrived at ` +
        `${esc(u.arrived_at_event_time)}`).join("; ") + "</p>");
  }
  fill("rule", meta.rules);
  fill("venue", meta.venues);
  fill("severity", meta.severities);
  $("#filters").addEventListener("change", loadList);
  $("#filters").addEventListener("submit", (e) => { e.preventDefault(); loadList(); });
  window.addEventListener("hashchange", route);
  await loadList();
  route();
}

init();
