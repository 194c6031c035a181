// moltis-config-ledger audit view: the only script. Pages work without it; it adds
// (1) login from the one-time link's #token fragment (never sent to the server in a
// URL) and (2) live timeline rows from server-sent events. It builds rows with
// textContent only: nothing from the ledger is ever parsed as HTML.
"use strict";

function loginFromFragment() {
  const form = document.getElementById("login");
  if (!form || !location.hash.startsWith("#token=")) return;
  const token = decodeURIComponent(location.hash.slice("#token=".length));
  history.replaceState(null, "", location.pathname + location.search);
  form.elements.token.value = token;
  form.submit();
}

function cell(row, text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function liveTimeline() {
  const table = document.getElementById("timeline");
  if (!table || !table.dataset.stream || !window.EventSource) return;
  const body = table.tBodies[0];
  const status = document.getElementById("live-status");
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("open", () => { if (status) status.textContent = "Live: new events appear here."; });
  source.addEventListener("ledger", (message) => {
    const ev = JSON.parse(message.data);
    if (body.querySelector(`tr[data-seq="${Number(ev.seq)}"]`)) return;
    const shown = ev.display;
    const row = document.createElement("tr");
    row.dataset.seq = String(Number(ev.seq));
    row.className = "new";
    const seq = cell(row, "", "seq");
    const link = document.createElement("a");
    link.href = `${table.dataset.base}/events/${Number(ev.seq)}`;
    link.textContent = shown.seq;
    seq.appendChild(link);
    cell(row, shown.time, "time");
    cell(row, shown.actor);
    cell(row, shown.source);
    cell(row, shown.reason, "reason");
    cell(row, shown.summary, "summary");
    body.insertBefore(row, body.firstChild);
  });
  source.addEventListener("problem", (message) => {
    if (status) status.textContent = "Live updates stopped: " + JSON.parse(message.data);
    source.close();
  });
  source.addEventListener("error", () => { if (status) status.textContent = "Live updates: reconnecting…"; });
}

document.addEventListener("DOMContentLoaded", () => {
  loginFromFragment();
  liveTimeline();
});
