// The dashboard page: polls the JSON API and draws small SVG time series. No framework, no build.
"use strict";

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const resp = await fetch(url, {cache: "no-store"});
  const body = await resp.json();
  if (!resp.ok) {
    const d = body.detail;
    throw new Error(typeof d === "string" ? d : d && d.field ? `${d.field}: ${d.reason}` : resp.statusText);
  }
  return body;
}

const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));

function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function rate(v) {
  if (v === null || v === undefined) return "–";
  return v >= 100 ? `${Math.round(v).toLocaleString("en-US")}/s` : `${v.toFixed(1)}/s`;
}

function seconds(v) {
  if (v === null || v === undefined) return "–";
  return v < 1 ? `${Math.round(v * 1000)} ms` : `${v.toFixed(2)} s`;
}

function value(v) {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "[" + v.map(value).join(", ") + "]";
  if (typeof v === "number" && !Number.isInteger(v)) return String(Math.round(v * 1e6) / 1e6);
  return String(v);
}

// --- components -----------------------------------------------------------------------------

async function showLog(name) {
  const pre = $("#component-log");
  try {
    const resp = await fetch(`/api/components/${encodeURIComponent(name)}/log?lines=100`, {cache: "no-store"});
    pre.textContent = `${name}: last lines of its log\n\n` + (await resp.text());
  } catch (err) {
    pre.textContent = `${name}: ${err.message}`;
  }
  pre.hidden = false;
}

async function refreshComponents() {
  const rows = await getJSON("/api/components");
  const body = $("#components tbody");
  body.replaceChildren(...rows.map((c) => {
    const logLink = el("a", {href: c.log_url, "data-component": c.name}, c.crashed ? "log tail" : "log");
    logLink.addEventListener("click", (ev) => { ev.preventDefault(); showLog(c.name); });
    const tr = el("tr", {"data-component": c.name, "data-state": c.state},
      el("td", {}, c.name),
      el("td", {}, el("span", {class: `state state-${c.state}`}, c.state)),
      el("td", {class: "num"}, c.port ? String(c.port) : "–"),
      el("td", {class: "num"}, c.pid ? String(c.pid) : "–"),
      el("td", {class: "num"}, duration(c.uptime_s)),
      el("td", {}, logLink));
    return tr;
  }));
  const crashed = rows.find((c) => c.crashed && c.log_tail);
  if (crashed && $("#component-log").hidden) {
    $("#component-log").textContent = `${crashed.name} crashed; last lines of its log:\n\n${crashed.log_tail}`;
    $("#component-log").hidden = false;
  }
}

// --- live rates ---------------------------------------------------------------------------

function drawChart(target, series, unit, format) {
  // series: [{name, color, points: [[t, v|null], ...]}]; a null breaks the line.
  const W = 320, H = 120, L = 44, B = 16, T = 6;
  const all = series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v !== null));
  const ts = series.flatMap((s) => s.points.map((p) => p[0]));
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img"});
  const max = all.length ? Math.max(...all) * 1.1 || 1 : 1;
  const t0 = ts.length ? Math.min(...ts) : 0, t1 = ts.length ? Math.max(...ts) : 1;
  const x = (t) => L + ((t - t0) / Math.max(t1 - t0, 1)) * (W - L - 4);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  root.append(svg("line", {x1: L, y1: y(0), x2: W - 4, y2: y(0), stroke: "#bbb"}));
  root.append(svg("line", {x1: L, y1: T, x2: L, y2: y(0), stroke: "#bbb"}));
  root.append(svg("text", {x: L - 3, y: T + 8, "text-anchor": "end"}, format(max)));
  root.append(svg("text", {x: L - 3, y: y(0), "text-anchor": "end"}, "0"));
  root.append(svg("text", {x: L, y: H - 3}, `last ${Math.round(t1 - t0)} s`));
  root.append(svg("text", {x: W - 4, y: H - 3, "text-anchor": "end"}, unit));
  for (const s of series) {
    let d = "", pen = false;
    for (const [t, v] of s.points) {
      if (v === null || v === undefined) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
    }
    if (d) root.append(svg("path", {d, fill: "none", stroke: s.color, "stroke-width": 1.6,
                                    "data-series": s.name, "data-points": String(s.points.length)}));
  }
  target.replaceChildren(root);
}

function lastValue(points, key) {
  for (let i = points.length - 1; i >= 0; i--) if (points[i][key] !== null) return points[i][key];
  return null;
}

async function refreshLive() {
  const live = await getJSON("/api/live");
  const pts = live.points;
  $("#live-topic").textContent = `(${live.topic}; one point every ${live.interval_s} s, freshness over ` +
    `${live.freshness_window_s} s)`;
  const line = (key, color) => ({name: key, color, points: pts.map((p) => [p.t, p[key]])});
  const charts = [
    ["#chart-into", [line("into_topic", "#1565c0")], "events/s", rate, "into_topic"],
    ["#chart-sink", [line("sink", "#2e7d32")], "events/s", rate, "sink"],
    ["#chart-stream", [line("stream", "#6a1b9a")], "events/s", rate, "stream"],
  ];
  for (const [id, series, unit, fmt, key] of charts) {
    drawChart($(`${id} .plot`), series, unit, fmt);
    $(`${id} .now`).textContent = rate(lastValue(pts, key));
    $(id).dataset.points = String(pts.length);
    $(id).dataset.last = String(lastValue(pts, key));
  }
  drawChart($("#chart-fresh .plot"), [line("freshness_p99_sink", "#2e7d32"),
                                      line("freshness_p99_stream", "#6a1b9a")], "seconds", seconds);
  $("#chart-fresh .now").textContent =
    `${seconds(lastValue(pts, "freshness_p99_sink"))} / ${seconds(lastValue(pts, "freshness_p99_stream"))}`;
  const errs = Object.entries(live.errors || {});
  $("#live-errors").textContent = errs.length ? "not read: " + errs.map(([k, v]) => `${k} (${v})`).join("; ") : "";
}

// --- topics and messages -------------------------------------------------------------------

async function refreshTopics() {
  const data = await getJSON("/api/topics");
  const body = $("#topics tbody");
  const rows = [];
  for (const t of data.topics) {
    t.partitions.forEach((p, i) => {
      const lag = Object.entries(p.lag).sort().map(([g, n]) => `${g}=${num(n)}`).join(", ") || "–";
      rows.push(el("tr", {"data-topic": t.name, "data-partition": String(p.partition)},
        el("td", {}, i === 0 ? t.name : ""), el("td", {class: "num"}, String(p.partition)),
        el("td", {class: "num"}, num(p.begin)), el("td", {class: "num"}, num(p.end)),
        el("td", {class: "num"}, num(p.end - p.begin)), el("td", {class: "lag"}, lag)));
    });
  }
  body.replaceChildren(...rows);
  const select = $("#browse-topic");
  const chosen = select.value || data.topic;
  const names = data.topics.map((t) => t.name);
  if (select.options.length !== names.length || [...select.options].some((o, i) => o.value !== names[i])) {
    select.replaceChildren(...names.map((n) => el("option", {value: n}, n)));
    if (names.includes(chosen)) select.value = chosen;
  }
}

async function browse(ev) {
  ev.preventDefault();
  const topic = $("#browse-topic").value, n = $("#browse-n").value;
  const status = $("#browse-status");
  status.textContent = "reading…";
  status.classList.remove("error");
  try {
    const data = await getJSON(`/api/topics/${encodeURIComponent(topic)}/records?n=${encodeURIComponent(n)}`);
    $("#records tbody").replaceChildren(...data.records.map((r) => el("tr", {"data-offset": String(r.offset)},
      el("td", {}, `p${r.partition}@${r.offset}`),
      el("td", {}, new Date(r.timestamp_ms).toISOString().replace("T", " ").replace("Z", "")),
      el("td", {class: "value"}, r.key ?? "null"),
      el("td", {class: "headers"}, r.headers.map((h) => `${h.key}=${h.value ?? "null"}`).join("\n") || "–"),
      el("td", {class: "value"}, r.value ?? "null"))));
    status.textContent = `${data.records.length} record(s) of ${data.topic}, oldest first`;
  } catch (err) {
    status.textContent = err.message;
    status.classList.add("error");
  }
}

// --- feature lookup ------------------------------------------------------------------------

async function lookup(ev) {
  ev.preventDefault();
  const entity = $("#lookup-entity").value, id = $("#lookup-id").value;
  const status = $("#lookup-status");
  status.textContent = "looking up…";
  status.classList.remove("error");
  try {
    const d = await getJSON(`/api/features/${encodeURIComponent(entity)}/${encodeURIComponent(id)}`);
    const online = d.online
      ? `online: as of event time ${new Date(d.online.as_of).toISOString()}, written ${num(d.online.age_ms)} ms ago`
      : `online: ${d.online_error || "the stream has not seen this " + entity}`;
    const batch = d.batch.note ? `batch: ${d.batch.note}` : d.batch.as_of === null
      ? `batch: no event of this ${entity} in ${d.batch.topic}`
      : `batch: ${num(d.batch.events)} event(s) of ${num(d.batch.records_scanned)} records in ${d.batch.topic}, ` +
        `as of ${new Date(d.batch.as_of).toISOString()}`;
    const behind = d.batch.newer_than_online
      ? ` The stream has not yet applied ${num(d.batch.newer_than_online)} of these events.` : "";
    $("#lookup-summary").textContent = `${online}. ${batch}. ${d.differences} difference(s).${behind}`;
    $("#lookup-summary").dataset.differences = String(d.differences);
    $("#features tbody").replaceChildren(...d.features.map((f) => el("tr",
      {class: f.equal === false ? "diff" : f.equal ? "same" : "", "data-feature": f.feature},
      el("td", {}, f.feature),
      el("td", {class: "online", "data-json": JSON.stringify(d.online ? f.online : null)},
         d.online ? value(f.online) : "–"),
      el("td", {class: "batch", "data-json": JSON.stringify(d.batch.as_of !== null ? f.batch : null)},
         d.batch.as_of !== null ? value(f.batch) : "–"))));
    status.textContent = `${entity} ${d.id}`;
  } catch (err) {
    status.textContent = err.message;
    status.classList.add("error");
  }
}

// --- results -------------------------------------------------------------------------------

async function refreshResults() {
  const results = await getJSON("/api/results");
  const box = $("#results");
  if (!results.length) {
    box.replaceChildren(el("p", {class: "meta"}, "No results yet: run a lab, a benchmark or `playground demo`."));
    return;
  }
  box.replaceChildren(...results.map((r) => el("div", {class: "result", "data-result": r.name},
    el("h3", {}, r.title), el("p", {class: "meta"}, `${r.name}, written ${r.written_at ?? "?"}`),
    r.chart ? el("img", {src: r.chart, alt: r.title, loading: "lazy"}) : el("p", {class: "meta"}, "no chart"),
    el("p", {class: "takeaway"}, r.takeaway ? `Takeaway: ${r.takeaway}` : ""))));
}

// --- polling -------------------------------------------------------------------------------

function every(ms, fn, name) {
  let busy = false;
  const run = async () => {
    if (busy) return;
    busy = true;
    try {
      await fn();
      $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      $("#updated").textContent = `${name}: ${err.message}`;
    } finally {
      busy = false;
    }
  };
  run();
  return setInterval(run, ms);
}

$("#browse").addEventListener("submit", browse);
$("#lookup").addEventListener("submit", lookup);
every(2000, refreshComponents, "components");
every(1000, refreshLive, "live rates");
every(3000, refreshTopics, "topics");
every(30000, refreshResults, "results");
