// The live page: reads the agent's own JSON API once a poll and draws it. Every name that a
// host's users choose (interfaces, processes, cgroups) is put into the page as text
// (textContent), never as markup.
"use strict";

const ROWS_SHOWN = 200;
const state = { selected: null, filter: "", interfaces: null, thresholds: null, charts: null, refresh: 2000 };

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function num(value, className) {
  return el("td", value, className ? "num " + className : "num");
}

const UNITS = ["", "k", "M", "G", "T"];
function human(value) {
  if (value === null || value === undefined) return "-";
  let v = Number(value);
  let unit = 0;
  while (Math.abs(v) >= 1000 && unit < UNITS.length - 1) {
    v /= 1000;
    unit += 1;
  }
  return (unit === 0 ? v.toFixed(v % 1 === 0 ? 0 : 1) : v.toFixed(1)) + UNITS[unit];
}

// The seed's thresholds: at the configured percentage a warning, at five times it critical.
function level(percent, threshold) {
  if (!threshold || percent <= 0) return "";
  if (percent >= 5 * threshold) return "critical";
  if (percent >= threshold) return "warning";
  return "";
}

async function get(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(path + ": " + response.status + " " + message);
  }
  return response.json();
}

function traffic(item) {
  const r = item.rates;
  return r ? r.rx.bytes_per_second + r.tx.bytes_per_second : 0;
}

function renderInterfaces(items) {
  const t = state.thresholds || {};
  const sorted = items.slice().sort((a, b) => traffic(b) - traffic(a) || a.name.localeCompare(b.name));
  if (!state.selected || !items.some((i) => i.name === state.selected)) {
    state.selected = sorted.length ? sorted[0].name : null;
  }
  const needle = state.filter.toLowerCase();
  const shown = sorted.filter((i) => i.name.toLowerCase().includes(needle));
  const rows = shown.slice(0, ROWS_SHOWN).map((i) => {
    const r = i.rates;
    const errors = r ? Math.max(r.rx.error_rate_percent, r.tx.error_rate_percent) : 0;
    const drops = r ? Math.max(r.rx.drop_rate_percent, r.tx.drop_rate_percent) : 0;
    const tr = row([
      el("td", i.name, "name"),
      el("td", i.operstate || (i.up ? "up" : "down")),
      num(r ? human(r.rx.bytes_per_second) : "-"),
      num(r ? human(r.tx.bytes_per_second) : "-"),
      num(r ? human(r.rx.packets_per_second) : "-"),
      num(r ? human(r.tx.packets_per_second) : "-"),
      num(errors.toFixed(2), level(errors, t.error_rate_percent)),
      num(drops.toFixed(2), level(drops, t.drop_rate_percent)),
    ]);
    tr.dataset.interface = i.name;
    if (i.name === state.selected) tr.classList.add("selected");
    return tr;
  });
  fill(document.querySelector("#interfaces tbody"), rows);
  document.getElementById("interface-count").textContent = "(" + items.length + ")";
  document.getElementById("interface-more").textContent =
    shown.length > ROWS_SHOWN ? (shown.length - ROWS_SHOWN) + " more: filter to narrow" :
    (shown.length === 0 && needle ? "no interface matches" : "");
}

function chart(id, series) {
  const target = document.getElementById(id);
  const opts = {
    width: Math.max(target.clientWidth, 240),
    height: 200,
    scales: { x: { time: true } },
    axes: [{}, { size: 60, values: (_, ticks) => ticks.map(human) }],
    series: [{}].concat(series.map(([label, stroke]) => ({ label, stroke, width: 1.5 }))),
  };
  return new uPlot(opts, [[]].concat(series.map(() => [])), target);
}

function ensureCharts() {
  if (state.charts) return state.charts;
  state.charts = {
    bytes: chart("chart-bytes", [["rx", "#1565c0"], ["tx", "#e65100"]]),
    packets: chart("chart-packets", [["rx", "#1565c0"], ["tx", "#e65100"]]),
    faults: chart("chart-faults", [["rx errors", "#c0262d"], ["tx errors", "#8e24aa"], ["rx drops", "#b26b00"], ["tx drops", "#00838f"]]),
  };
  window.addEventListener("resize", () => {
    for (const [name, c] of Object.entries(state.charts)) {
      const width = Math.max(document.getElementById("chart-" + name).clientWidth, 240);
      c.setSize({ width, height: 200 });
    }
  });
  return state.charts;
}

function renderHistory(history) {
  const charts = ensureCharts();
  const points = history.items;
  const x = points.map((p) => p.timestamp_ms / 1000);
  const pick = (dir, field) => points.map((p) => p[dir][field]);
  charts.bytes.setData([x, pick("rx", "bytes_per_second"), pick("tx", "bytes_per_second")]);
  charts.packets.setData([x, pick("rx", "packets_per_second"), pick("tx", "packets_per_second")]);
  charts.faults.setData([x, pick("rx", "errors_per_second"), pick("tx", "errors_per_second"),
    pick("rx", "drops_per_second"), pick("tx", "drops_per_second")]);
  document.getElementById("chart-subject").textContent = history.interface || "all interfaces";
  if (points.length > 0) {
    const last = points[points.length - 1].seconds * 1000;
    state.refresh = Math.min(Math.max(last, 500), 10000);
  }
}

function renderFindings(diagnosis) {
  const status = document.getElementById("diagnosis-status");
  status.textContent = diagnosis.status || "ok";
  status.className = "badge " + (diagnosis.status || "ok");
  const items = diagnosis.findings.map((f) => {
    const li = el("li");
    li.append(el("span", f.severity, f.severity), " ", el("strong", f.subject), ": ", f.summary);
    if (f.evidence.length) {
      const evidence = f.evidence.map((e) => e.name + " = " + human(e.value) + (e.unit ? " " + e.unit : ""));
      li.append(el("div", evidence.join("; "), "evidence"));
    }
    return li;
  });
  if (items.length === 0) items.push(el("li", "no findings", "muted"));
  document.getElementById("findings").replaceChildren(...items);
}

function renderDrops(drops) {
  const byReason = new Map();
  for (const d of drops.items) byReason.set(d.reason, (byReason.get(d.reason) || 0) + d.count);
  const rows = [...byReason.entries()].sort((a, b) => b[1] - a[1])
    .map(([reason, count]) => row([reason, num(human(count))]));
  fill(document.querySelector("#drops tbody"), rows);
}

function flow(sample) {
  if (!sample.protocol) return "";
  const at = (address, port) => (port === undefined || port === null ? address : address + ":" + port);
  return sample.protocol + " " + at(sample.source, sample.source_port) + " > " +
    at(sample.destination, sample.destination_port) + (sample.tcp_flags ? " [" + sample.tcp_flags + "]" : "");
}

function renderRecentDrops(recent) {
  const rows = recent.items.map((s) => row([
    new Date(s.timestamp_ms).toLocaleTimeString(),
    s.interface,
    s.reason,
    flow(s),
    s.location,
  ]));
  fill(document.querySelector("#recent-drops tbody"), rows);
}

function renderConnections(connections) {
  const rows = connections.items.filter((c) => c.count > 0)
    .sort((a, b) => b.count - a.count).map((c) => row([c.state, num(c.count)]));
  fill(document.querySelector("#connections tbody"), rows);
}

function renderListening(listening) {
  const rows = listening.items.map((l) => row([
    l.protocol, l.address, num(l.port),
    l.processes.map((p) => p.name + " (" + p.pid + ")").join(", "),
  ]));
  fill(document.querySelector("#listening tbody"), rows);
}

function renderProcesses(processes) {
  const rate = (p, dir) => p.io.filter((i) => i.direction === dir).reduce((s, i) => s + (i.bytes_per_second || 0), 0);
  const total = (p, dir) => p.io.filter((i) => i.direction === dir).reduce((s, i) => s + i.bytes, 0);
  const rows = processes.items.slice()
    .sort((a, b) => rate(b, "tx") + rate(b, "rx") - rate(a, "tx") - rate(a, "rx") || total(b, "tx") - total(a, "tx"))
    .map((p) => {
      const tr = row([num(p.pid), el("td", p.name, "name"), p.service || p.cgroup,
        num(human(rate(p, "tx"))), num(human(rate(p, "rx"))), num(human(total(p, "tx"))), num(human(total(p, "rx")))]);
      return tr;
    });
  fill(document.querySelector("#processes tbody"), rows);
}

// Failing first, as the API orders them.
function renderPeers(peers) {
  const results = ["ok", "refused", "timeout", "unreachable", "other"];
  const rows = peers.items.slice(0, 20).map((p) => row([
    num(p.netns), p.role, el("td", p.peer, "name"), p.port,
    ...results.map((r) => num(human(p.results[r]), r !== "ok" && p.results[r] > 0 ? "critical" : "")),
    num(human(p.connections)), num(human(p.bytes_sent)), num(human(p.bytes_received)),
  ]));
  fill(document.querySelector("#peers tbody"), rows);
}

// The queues and tables of every namespace, the fullest first: listeners' accept queues,
// connection tracking and queueing disciplines that hold or dropped something.
function renderPressure(pressure) {
  const queues = [];
  for (const n of pressure.namespaces) {
    for (const l of n.listeners) {
      const held = l.processes.map((p) => p.name + " (" + p.pid + ")").join(", ");
      queues.push({ netns: n.netns, what: "listen " + l.address + ":" + l.port + (held ? " " + held : ""),
        used: l.length, limit: l.limit, dropped: l.drops });
    }
    if (n.conntrack) {
      const c = n.conntrack;
      queues.push({ netns: n.netns, what: "conntrack", used: c.entries, limit: c.limit,
        dropped: c.insert_failed + c.drop + c.early_drop });
    }
    for (const q of n.qdiscs.filter((q) => q.kind !== "noqueue" && (q.backlog_packets > 0 || q.drops > 0))) {
      queues.push({ netns: n.netns, what: "qdisc " + q.interface + " " + q.kind + " " + q.handle,
        used: q.backlog_packets, limit: null, dropped: q.drops });
    }
  }
  const fill_of = (q) => (q.limit ? q.used / q.limit : 0);
  queues.sort((a, b) => fill_of(b) - fill_of(a) || b.dropped - a.dropped);
  const rows = queues.slice(0, 20).map((q) => row([
    num(q.netns), el("td", q.what, "name"), num(human(q.used), q.limit && q.used >= q.limit ? "critical" : ""),
    num(human(q.limit)), num(human(q.dropped), q.dropped > 0 ? "critical" : ""),
  ]));
  fill(document.querySelector("#pressure tbody"), rows);
}

function renderStatus(status) {
  state.thresholds = status.thresholds;
  document.getElementById("agent").textContent = "agent " + status.version;
  const method = (p) => p.method ? el("td", p.method)
    : p.off ? el("td", "off (configuration)") : el("td", "not attached", "critical");
  const rows = status.probes.map((p) => row([p.probe, method(p)]));
  fill(document.querySelector("#probes tbody"), rows);
}

async function showHistory() {
  const subject = state.selected ? "?interface=" + encodeURIComponent(state.selected) : "";
  renderHistory(await get("/api/v1/history" + subject));
}

async function refresh() {
  const problem = document.getElementById("problem");
  try {
    const [status, interfaces, diagnosis, drops, recent, connections, listening, processes, peers, pressure] = await Promise.all([
      get("/api/v1/status"), get("/api/v1/interfaces"), get("/api/v1/diagnosis"), get("/api/v1/drops"),
      get("/api/v1/drops/recent?limit=15"), get("/api/v1/connections"), get("/api/v1/listening"),
      get("/api/v1/processes"), get("/api/v1/tcp/peers"), get("/api/v1/pressure"),
    ]);
    renderStatus(status);
    state.interfaces = interfaces.items;
    renderInterfaces(interfaces.items);
    await showHistory();
    renderFindings(diagnosis);
    renderDrops(drops);
    renderRecentDrops(recent);
    renderConnections(connections);
    renderListening(listening);
    renderProcesses(processes);
    renderPeers(peers);
    renderPressure(pressure);
    document.getElementById("updated").textContent =
      "updated " + new Date(status.snapshot_timestamp_ms).toLocaleTimeString();
    problem.hidden = true;
  } catch (err) {
    problem.textContent = "The agent did not answer: " + err.message;
    problem.hidden = false;
  }
  setTimeout(refresh, state.refresh);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", (event) => {
    state.filter = event.target.value;
    if (state.interfaces) renderInterfaces(state.interfaces);
  });
  document.querySelector("#interfaces tbody").addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (tr && tr.dataset.interface) {
      state.selected = tr.dataset.interface;
      for (const other of tr.parentNode.children) other.classList.toggle("selected", other === tr);
      showHistory().catch(() => {});
    }
  });
  refresh();
});
