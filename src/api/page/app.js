// fleetkeeper status page: one call (/api/v1/overview) every 5 s, the
// token from localStorage as a bearer token; no framework, no CDN.
"use strict";
(function () {
  const REFRESH_MS = 5000;
  const $ = (sel) => document.querySelector(sel);
  let traceRun = null;

  function token() { return localStorage.getItem("fk_token") || ""; }

  async function api(path, opts) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers || {});
    if (token()) headers["Authorization"] = "Bearer " + token();
    const r = await fetch(path, Object.assign({}, opts, { headers: headers }));
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, body: body };
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const s = Math.round((Date.now() - d.getTime()) / 1000);
    if (Math.abs(s) < 90) return s >= 0 ? s + " s ago" : "in " + -s + " s";
    const m = Math.round(s / 60);
    if (Math.abs(m) < 90) return m >= 0 ? m + " min ago" : "in " + -m + " min";
    return d.toISOString().replace("T", " ").slice(0, 16) + "Z";
  }

  function secs(x) { return x === null || x === undefined ? "—" : x.toFixed(x < 10 ? 2 : 0) + " s"; }

  function spark(runs) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 80 18");
    const d = (runs || []).filter((r) => r.duration_sec !== null).map((r) => r.duration_sec).reverse();
    if (d.length > 1) {
      const max = Math.max.apply(null, d) || 1;
      const pts = d.map((v, i) => (i * 80 / (d.length - 1)).toFixed(1) + "," + (17 - v / max * 16).toFixed(1));
      const pl = document.createElementNS(ns, "polyline");
      pl.setAttribute("points", pts.join(" "));
      svg.appendChild(pl);
    }
    return svg;
  }

  function fill(tbody, rows) {
    tbody.replaceChildren.apply(tbody, rows);
    if (rows.length === 0) {
      const tr = el("tr");
      const td = el("td", "none", "muted");
      td.colSpan = 5;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  }

  function taskRow(t) {
    const tr = el("tr");
    tr.dataset.task = t.name;
    const status = t.running ? "running" : (t.last_status || "never run");
    tr.append(el("td", t.name), el("td", status, "status " + status.replace(/ /g, "_")),
              el("td", when(t.last_finished_at)), el("td", when(t.next_run)));
    const td = el("td");
    td.appendChild(spark(t.recent_runs));
    tr.appendChild(td);
    return tr;
  }

  function serverRow(s, canOperate) {
    const tr = el("tr");
    tr.dataset.server = s.handle;
    tr.append(el("td", s.handle), el("td", s.status, s.status), el("td", s.health, "health " + s.health),
              el("td", s.response_time_ms === null ? "—" : Math.round(s.response_time_ms) + " ms"));
    const td = el("td");
    if (canOperate) {
      const b = el("button", "recover", "recover");
      b.dataset.server = s.handle;
      b.addEventListener("click", () => operate("/api/v1/servers/" + encodeURIComponent(s.handle) + "/recover", "recovery of " + s.handle));
      td.appendChild(b);
    }
    tr.appendChild(td);
    return tr;
  }

  function incidentRow(i, canOperate) {
    const tr = el("tr");
    tr.dataset.incident = i.id;
    tr.append(el("td", i.id), el("td", i.server || "—"), el("td", i.type),
              el("td", when(i.detected_at) + (i.acknowledged_at ? " · acknowledged" : "")));
    const td = el("td");
    if (canOperate) {
      if (!i.acknowledged_at) {
        const b = el("button", "ack", "ack");
        b.addEventListener("click", () => operate("/api/v1/incidents/" + i.id + "/ack", "incident " + i.id + " acknowledged"));
        td.appendChild(b);
      }
      if (i.server) {
        const r = el("button", "recover", "recover");
        r.dataset.server = i.server;
        r.addEventListener("click", () => operate("/api/v1/servers/" + encodeURIComponent(i.server) + "/recover", "recovery of " + i.server));
        td.appendChild(r);
      }
    }
    tr.appendChild(td);
    return tr;
  }

  function runRow(r) {
    const tr = el("tr", null, "clickable");
    tr.dataset.run = r.id;
    tr.dataset.status = r.status;
    tr.append(el("td", r.id), el("td", r.task), el("td", r.status, r.status),
              el("td", when(r.started_at)), el("td", secs(r.duration_sec)));
    tr.addEventListener("click", () => { traceRun = r.id; showTrace(); });
    return tr;
  }

  function say(text) {
    const m = $("#message");
    m.textContent = text || "";
    m.hidden = !text;
  }

  async function operate(path, what) {
    const r = await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    if (r.status >= 200 && r.status < 300) say("");
    else say(what + ": " + (r.body && r.body.error ? r.body.error : "HTTP " + r.status));
    refresh();
  }

  async function showTrace() {
    if (traceRun === null) return;
    const r = await api("/api/v1/runs/" + traceRun + "/events");
    if (r.status !== 200) return;
    $("#trace-section").hidden = false;
    $("#trace-id").textContent = "run " + traceRun + " · " + (r.body.correlation_id || "");
    const items = (r.body.events || []).map((e) => {
      const li = el("li");
      const rest = Object.assign({}, e);
      ["timestamp", "event", "level", "event_id", "service", "correlation_id"].forEach((k) => delete rest[k]);
      li.append(el("span", (e.timestamp || "").slice(11, 23) + " ", "muted"), el("b", e.event, e.level === "error" ? "failed" : ""),
                el("span", " " + JSON.stringify(rest), "muted"));
      return li;
    });
    $("#trace").replaceChildren.apply($("#trace"), items);
  }

  // Without a token, only a public page asks for data (no 401 to log).
  async function mayRead() {
    if (token()) return true;
    const h = await fetch("/healthz").then((r) => r.json()).catch(() => ({}));
    return h.public_status === true;
  }

  function clear() {
    ["#tasks", "#servers", "#incidents", "#runs"].forEach((t) => fill($(t + " tbody"), []));
    $("#trace-section").hidden = true;
  }

  async function refresh() {
    let r;
    if (!(await mayRead())) {
      clear();
      $("#daemon").textContent = "a read token is needed";
      say("enter an API token (scope read or operate)");
      return;
    }
    try { r = await api("/api/v1/overview"); } catch (e) { say("cannot reach the daemon"); return; }
    if (r.status === 401 || r.status === 403) {
      $("#daemon").textContent = "a read token is needed";
      say(token() ? "the token was refused" : "enter an API token (scope read or operate)");
      return;
    }
    if (r.status !== 200) { say("HTTP " + r.status + ": " + (r.body && r.body.error)); return; }
    const o = r.body;
    say("");
    $("#daemon").textContent = "v" + o.daemon.version + " · pid " + o.daemon.pid + " · " + o.daemon.running + " running" + (o.can_operate ? " · operate" : " · read only");
    document.body.dataset.canOperate = o.can_operate ? "1" : "0";
    fill($("#tasks tbody"), o.tasks.map(taskRow));
    fill($("#servers tbody"), o.servers.map((s) => serverRow(s, o.can_operate)));
    fill($("#incidents tbody"), o.incidents.map((i) => incidentRow(i, o.can_operate)));
    fill($("#runs tbody"), o.runs.map(runRow));
    $("#updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + "Z";
    document.body.dataset.loaded = String((Number(document.body.dataset.loaded) || 0) + 1);
    showTrace();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("#token").value.trim();
      if (v) localStorage.setItem("fk_token", v);
      $("#token").value = "";
      refresh();
    });
    $("#forget-token").addEventListener("click", () => { localStorage.removeItem("fk_token"); refresh(); });
    refresh();
    setInterval(refresh, REFRESH_MS);
  });
})();
