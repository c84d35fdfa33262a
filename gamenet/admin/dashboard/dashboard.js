// The gamenet master's dashboard: reads the admin API (doc/operations.md)
// with the admin token every REFRESH_MS and shows every server, plots of the
// last minutes, and the routes of the server picked. Plain JavaScript, no
// build step, no library: the master serves this file as it is.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const HISTORY_SECONDS = 300;
  const TOKEN_KEY = "gamenet.adminToken";
  // The API gives latencies in seconds, memory in bytes, CPU in percent.
  const MS_PER_SECOND = 1000;
  const BYTES_PER_MB = 1e6;
  // Tableau 10: distinguishable colours, one per server in table order.
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
  ];
  // Per plot: the history field and how to turn a sample's value into the unit shown.
  const PLOTS = {
    rps: (v) => v,
    p99: (v) => v * MS_PER_SECOND,
    cpu: (v) => v,
    rss: (v) => v / BYTES_PER_MB,
  };

  const $ = (id) => document.getElementById(id);

  let token = null;     // the token in use, or null when there is none
  let timer = null;     // the next refresh
  let running = false;  // a refresh is waiting for the master
  let again = false;    // refresh once more as soon as the running one ends
  let selected = null;  // the id of the server whose routes are shown
  let past = null;      // the last /api/history answer, redrawn on resize
  let colours = new Map();  // server id -> plot colour

  /** An answer other than 2xx from the API, or no answer at all (status 0). */
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, used) {
    let response;
    try {
      response = await fetch(path, { headers: { Authorization: `Bearer ${used}` }, cache: "no-store" });
    } catch (e) {
      const since = $("updated").dataset.time;
      throw new ApiError(0, `The master at ${location.host} is unreachable (${e.message}); ` +
        `trying again every ${REFRESH_MS / 1000} s.` + (since ? ` The figures below are from ${since}.` : ""));
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (response.status === 401) {
      throw new ApiError(401, "The master refused this token (401 Unauthorized): enter the cluster's admin token.");
    }
    if (!response.ok) {
      const why = body && body.error ? body.error : response.statusText;
      throw new ApiError(response.status, `${path}: ${response.status} ${why}`);
    }
    return body;
  }

  // Formatting: every missing figure (a server that is down has none) is a dash.

  function missing(v) {
    return v === null || v === undefined || Number.isNaN(v);
  }

  function fixed(v, digits) {
    if (missing(v)) return "–";
    return v.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function rate(v) {
    return missing(v) ? "–" : fixed(v, v >= 100 ? 0 : 1);
  }

  function ms(seconds) {
    if (missing(seconds)) return "–";
    const v = seconds * MS_PER_SECOND;
    return fixed(v, v >= 100 ? 0 : v >= 10 ? 1 : 2);
  }

  function duration(seconds) {
    if (missing(seconds)) return "–";
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    const two = (n) => String(n).padStart(2, "0");
    if (d > 0) return `${d}d ${two(h)}h`;
    if (h > 0) return `${h}h ${two(m)}m`;
    if (m > 0) return `${m}m ${two(s % 60)}s`;
    return `${s}s`;
  }

  // The columns of the server table after the server's id: [field, format].
  const COLUMNS = [
    ["type", (v) => v || "–"],
    ["state", (v) => v || "unknown"],
    ["ready", (v) => (v ? "yes" : "no")],
    ["clients", (v) => fixed(v, 0)],
    ["sessions", (v) => fixed(v, 0)],
    ["rps", rate],
    ["p50", ms],
    ["p99", ms],
    ["errors_per_second", rate],
    ["cpu", (v) => fixed(v, 1)],
    ["rss", (v) => (missing(v) ? "–" : fixed(v / BYTES_PER_MB, 1))],
    ["uptime", duration],
    ["restarts", (v) => fixed(v, 0)],
  ];
  const NUMERIC = new Set(["clients", "sessions", "rps", "p50", "p99", "errors_per_second", "cpu", "rss",
    "uptime", "restarts"]);

  function setCell(cell, field, value, format) {
    cell.textContent = format(value);
    cell.dataset.value = missing(value) ? "" : String(value);
    if (field === "state") cell.className = `state state-${/^[a-z]+$/.test(value) ? value : "unknown"}`;
    if (field === "ready") cell.className = value ? "ready" : "not-ready";
  }

  function serverRow(id) {
    const row = document.createElement("tr");
    row.dataset.server = id;
    const head = document.createElement("th");
    head.scope = "row";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "server";
    button.textContent = id;
    button.addEventListener("click", () => select(selected === id ? null : id));
    head.append(button);
    row.append(head);
    for (const [field] of COLUMNS) {
      const cell = document.createElement("td");
      cell.dataset.field = field;
      if (NUMERIC.has(field)) cell.classList.add("num");
      row.append(cell);
    }
    return row;
  }

  // Rows are updated in place, so that keyboard focus stays on a server's button.
  function showServers(servers) {
    const body = $("servers").tBodies[0];
    const rows = new Map([...body.rows].map((row) => [row.dataset.server, row]));
    colours = new Map(servers.map((s, n) => [s.id, PALETTE[n % PALETTE.length]]));
    servers.forEach((server, n) => {
      let row = rows.get(server.id);
      rows.delete(server.id);
      if (!row) row = serverRow(server.id);
      if (body.rows[n] !== row) body.insertBefore(row, body.rows[n] || null);
      row.querySelector("button").setAttribute("aria-pressed", String(server.id === selected));
      row.classList.toggle("selected", server.id === selected);
      row.classList.toggle("inactive", server.state === "down" || server.state === "restarting");
      row.style.setProperty("--colour", colours.get(server.id));
      COLUMNS.forEach(([field, format], i) => setCell(row.cells[i + 1], field, server[field], format));
    });
    for (const row of rows.values()) row.remove();
  }

  function showCluster(cluster) {
    $("cluster-name").textContent = cluster.name || "";
    document.title = `gamenet ${cluster.name || "cluster"}`;
    const master = cluster.master || {};
    $("master").textContent = `master pid ${master.pid ?? "–"}, up ${duration(master.uptime)} · ` +
      `${cluster.up} of ${cluster.servers} servers up`;
    const now = new Date().toLocaleTimeString("en-GB");
    $("updated").dataset.time = now;
    $("updated").textContent = `updated ${now}`;
  }

  function showRoutes(answer) {
    const section = $("routes-section");
    section.hidden = selected === null;
    if (selected === null) return;
    $("routes-server").textContent = selected;
    const body = $("routes").tBodies[0];
    const note = $("routes-note");
    body.replaceChildren();
    if (answer === null) {
      note.textContent = `${selected} is no longer a server of this cluster.`;
      note.hidden = false;
      return;
    }
    const routes = Object.entries(answer.routes || {});
    routes.sort((a, b) => (b[1].requests - a[1].requests) || a[0].localeCompare(b[0]));
    for (const [route, figures] of routes) {
      const row = body.insertRow();
      row.dataset.route = route;
      const head = document.createElement("th");
      head.scope = "row";
      head.textContent = route;
      row.append(head);
      for (const [field, format] of [["requests", (v) => fixed(v, 0)], ["errors", (v) => fixed(v, 0)],
        ["rps", rate], ["p50", ms], ["p99", ms]]) {
        const cell = row.insertCell();
        cell.className = "num";
        cell.dataset.field = field;
        cell.dataset.value = missing(figures[field]) ? "" : String(figures[field]);
        cell.textContent = format(figures[field]);
      }
    }
    note.textContent = `No route of ${selected} has been called yet.`;
    note.hidden = routes.length > 0;
  }

  function select(id) {
    selected = id;
    for (const row of $("servers").tBodies[0].rows) {
      row.classList.toggle("selected", row.dataset.server === id);
      row.querySelector("button").setAttribute("aria-pressed", String(row.dataset.server === id));
    }
    $("routes-section").hidden = id === null;
    $("select-hint").hidden = id !== null;
    if (id !== null) {
      $("routes-server").textContent = id;
      $("routes").tBodies[0].replaceChildren();
      $("routes-note").textContent = "Loading…";
      $("routes-note").hidden = false;
      refreshNow();
    }
  }

  // Plots

  function niceCeiling(v) {
    if (!(v > 0)) return 1;
    const step = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (v <= m * step) return m * step;
    }
    return 10 * step;
  }

  function label(v) {
    return v >= 100 || Number.isInteger(v) ? fixed(v, 0) : fixed(v, v >= 1 ? 1 : 2);
  }

  // The digits after the point that show every multiple of step exactly.
  function digits(step) {
    let d = 0;
    while (d < 4 && Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) > 1e-9) d += 1;
    return d;
  }

  // The time the plots span: the samples there are, from a minute up to
  // HISTORY_SECONDS, and the step between labels on the time axis.
  const FRAMES = [[60, 10], [120, 30], [180, 30], [HISTORY_SECONDS, 60]];

  function timeFrame(answer) {
    let first = Infinity, end = 0;
    for (const points of Object.values(answer.servers || {})) {
      for (const p of points) {
        first = Math.min(first, p.t);
        end = Math.max(end, p.t);
      }
    }
    const [span, step] = FRAMES.find(([seconds]) => end - first <= seconds) || FRAMES[FRAMES.length - 1];
    return { start: end - span, end, span, step };
  }

  function drawPlot(canvas, answer, frame) {
    const field = canvas.dataset.field;
    const scale = PLOTS[field];
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (width === 0 || height === 0) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);

    const { start, end, span, step } = frame;
    const series = Object.entries(answer.servers || {});
    const gap = 2.5 * (answer.interval || REFRESH_MS / 1000);
    let top = 0, samples = 0;
    for (const [, points] of series) {
      for (const p of points) {
        if (p.t >= start && !missing(p[field])) top = Math.max(top, scale(p[field]));
      }
    }
    top = niceCeiling(top * 1.05);  // a line at the top stays visible
    const left = 44, right = 8, upper = 8, lower = 20;
    const w = width - left - right, h = height - upper - lower;
    const x = (t) => left + ((t - start) / span) * w;
    const y = (v) => upper + h - (v / top) * h;

    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#555";
    g.strokeStyle = "#e2e5e9";
    g.lineWidth = 1;
    g.textBaseline = "middle";
    g.textAlign = "right";
    for (const v of [0, top / 2, top]) {
      g.beginPath();
      g.moveTo(left, Math.round(y(v)) + 0.5);
      g.lineTo(left + w, Math.round(y(v)) + 0.5);
      g.stroke();
      g.fillText(fixed(v, digits(top / 2)), left - 6, y(v));
    }
    g.textBaseline = "top";
    for (let ago = span; ago >= 0; ago -= step) {
      g.textAlign = ago === span ? "left" : ago === 0 ? "right" : "center";
      const text = ago === 0 ? "now" : step < 60 ? `−${ago} s` : `−${ago / 60} min`;
      g.fillText(text, x(end - ago), upper + h + 5);
    }

    // Each server's samples joined where they follow each other; a sample
    // with no neighbour (a gap of more than two polls either side) is a dot.
    const latest = [];
    g.lineWidth = 1.75;
    g.lineJoin = "round";
    for (const [id, points] of series) {
      g.strokeStyle = g.fillStyle = colours.get(id) || "#888";
      const runs = [];
      let previous = null;
      for (const p of points) {
        if (p.t < start || missing(p[field])) {
          previous = null;
          continue;
        }
        if (previous === null || p.t - previous > gap) runs.push([]);
        runs[runs.length - 1].push([x(p.t), y(scale(p[field]))]);
        previous = p.t;
        samples += 1;
      }
      for (const run of runs) {
        g.beginPath();
        if (run.length === 1) {
          g.arc(run[0][0], run[0][1], 2.5, 0, 2 * Math.PI);
          g.fill();
          continue;
        }
        run.forEach(([px, py], n) => (n === 0 ? g.moveTo(px, py) : g.lineTo(px, py)));
        g.stroke();
      }
      const last = points.length ? points[points.length - 1][field] : null;
      if (!missing(last)) latest.push([id, scale(last)]);
    }
    canvas.dataset.samples = String(samples);
    canvas.dataset.latest = JSON.stringify(Object.fromEntries(latest));
    canvas.setAttribute("aria-label",
      `${canvas.parentElement.querySelector("figcaption").textContent}, latest: ` +
      (latest.map(([id, v]) => `${id} ${label(v)}`).join(", ") || "no data"));
  }

  function showHistory(answer) {
    past = answer;
    const frame = timeFrame(answer);
    $("plots-heading").textContent = frame.span === 60 ? "Last minute" : `Last ${frame.span / 60} minutes`;
    const legend = $("legend");
    legend.replaceChildren(...[...colours].map(([id, colour]) => {
      const item = document.createElement("li");
      item.style.setProperty("--colour", colour);
      item.textContent = id;
      return item;
    }));
    for (const canvas of document.querySelectorAll("canvas[data-field]")) drawPlot(canvas, answer, frame);
  }

  // Messages and the token

  function showMessage(text) {
    $("message").textContent = text || "";
    $("message").hidden = !text;
    $("board").classList.toggle("stale", Boolean(text));
  }

  function askToken(text) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(timer);
    $("forget").hidden = true;
    $("board").hidden = true;  // what the token showed goes with it
    $("token-form").hidden = false;
    showMessage(text);
    $("token").focus();
  }

  function useToken(value) {
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-form").hidden = true;
    $("forget").hidden = false;
    showMessage(null);
    refreshNow();
  }

  // Refreshing: one request set at a time, the next one REFRESH_MS after the last ends.

  async function refresh() {
    running = true;
    again = false;
    const used = token, picked = selected;
    let failure = null;
    try {
      const [cluster, servers, samples, routes] = await Promise.all([
        api("/api/cluster", used),
        api("/api/servers", used),
        api(`/api/history?seconds=${HISTORY_SECONDS}`, used),
        picked === null ? null : api(`/api/servers/${encodeURIComponent(picked)}`, used).catch((e) => {
          if (e.status === 404) return null;
          throw e;
        }),
      ]);
      if (used === token) {
        showServers(servers.servers);
        showCluster(cluster);
        $("board").hidden = false;
        showHistory(samples);
        if (picked === selected) showRoutes(routes);
        showMessage(null);
      }
    } catch (e) {
      failure = e;
    }
    running = false;
    if (used !== token) {
      if (token !== null) refreshNow();
      return;
    }
    if (failure !== null) {
      if (failure.status === 401) {
        askToken(failure.message);
        return;
      }
      showMessage(failure instanceof ApiError ? failure.message : `The dashboard failed: ${failure}`);
    }
    if (token !== null) timer = setTimeout(refresh, again ? 0 : REFRESH_MS);
  }

  function refreshNow() {
    if (running) {
      again = true;
      return;
    }
    clearTimeout(timer);
    refresh();
  }

  function start() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      $("token").value = "";
      if (value) useToken(value);
    });
    $("forget").addEventListener("click", () => askToken(null));
    window.addEventListener("resize", () => {
      if (past !== null) showHistory(past);
    });
    // A token in the address (#token=...) fills the form once and leaves the
    // address bar, so that it is neither bookmarked nor left on screen.
    const fromAddress = new URLSearchParams(location.hash.slice(1)).get("token");
    if (fromAddress !== null) history.replaceState(null, "", location.pathname + location.search);
    const value = fromAddress || sessionStorage.getItem(TOKEN_KEY);
    if (value) useToken(value);
    else askToken(null);
  }

  start();
})();
