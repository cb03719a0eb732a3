// The console's login page: asks the server who is logged in (and for the CSRF token), then posts the form
// as JSON with the token in X-CSRF-Token. Every text from the server is shown with textContent (never HTML).
"use strict";

const note = (text, warn) => {
  const p = document.getElementById("login-note");
  p.textContent = text;
  p.className = warn ? "warn" : "note";
};

async function session() {
  const r = await fetch("/api/session", {credentials: "same-origin"});
  return r.json();
}

async function init() {
  let s;
  try { s = await session(); } catch (e) { note(String(e.message || e), true); return; }
  if (s.authenticated) { location.replace("/console/" + location.hash); return; }
  if (s.locked) { note(s.locked, true); return; }
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("username").focus();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    note("…");
    const body = JSON.stringify({username: form.username.value, password: form.password.value});
    let r;
    try {
      r = await fetch("/api/login", {method: "POST", credentials: "same-origin", body,
        headers: {"Content-Type": "application/json", "X-CSRF-Token": s.csrf}});
    } catch (e) { note(String(e.message || e), true); return; }
    if (r.ok) { location.replace("/console/" + location.hash); return; }
    const data = await r.json().catch(() => ({}));
    note(data.error || `${r.status}`, true);
    form.password.value = "";
    s = await session();  // a fresh token if the session changed
  });
}

init();
