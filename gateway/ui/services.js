// Services: every process's state and restarts, each service's load (requests, errors,
// latency, CPU, memory), who calls whom as a picture with the traffic on its edges, and the
// slowest recent traces opened as a waterfall, refreshed while the page is open; the live
// configuration below them (config.js).

import { call, path } from "./api.js";
import { configSection } from "./config.js";
import { formatNumber, h, paged, replace, s } from "./dom.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";

const REFRESH_MS = 2000;
const SLOW_TRACES = 50;
const TRACES_PER_PAGE = 10;
const MEBIBYTE = 1024 * 1024;

function processesTable(processes) {
  return h("table", { class: "processes" },
    h("thead", {}, h("tr", {}, [t("services.process"), t("services.service"), t("services.kind"), t("services.state"), t("services.restarts"), t("services.lastExit"), t("services.metrics")].map((c) => h("th", {}, c)))),
    h("tbody", {}, processes.map((p) => h("tr", { class: p.state === "running" ? "" : "down", dataset: { process: p.name, state: p.state, restarts: String(p.restarts) } },
      h("td", {}, p.name), h("td", {}, p.service), h("td", {}, p.kind), h("td", { class: "state" }, t(`services.${p.state}`)),
      h("td", { class: "number" }, p.restarts), h("td", {}, p.lastExit || "–"), h("td", {}, p.kind === "app" ? (p.metricsUp ? "✓" : "✗") : "")))));
}

function loadTable(load) {
  const ms = (value) => (value === undefined ? "–" : formatNumber(value, 1));
  return h("table", { class: "load" },
    h("thead", {}, h("tr", {}, [t("services.service"), t("services.instances"), t("services.rate"), t("services.errors"), "p50 ms", "p99 ms", "CPU %", t("services.memory")].map((c) => h("th", {}, c)))),
    h("tbody", {}, load.map((l) => h("tr", { dataset: { service: l.service } },
      h("td", {}, l.service), h("td", { class: "number" }, l.instances), h("td", { class: "number" }, formatNumber(l.requestsPerSecond, 1)),
      h("td", { class: "number" }, formatNumber(l.errorsPerSecond, 1)), h("td", { class: "number" }, ms(l.p50Ms)), h("td", { class: "number" }, ms(l.p99Ms)),
      h("td", { class: "number" }, formatNumber(l.cpuPercent, 1)), h("td", { class: "number" }, `${formatNumber(Number(l.residentBytes) / MEBIBYTE, 0)} MiB`)))));
}

// Columns by the longest chain of calls from the gateway (so the stages line up after the
// pipeline); an edge is as wide as its callee's request rate.
function topology(edges, load, processes) {
  const nodes = new Set(edges.flatMap((e) => [e.caller, e.callee]));
  const depth = { gateway: 0 };
  for (let pass = 0; pass < nodes.size; pass++) // a chain is at most every node long, even with a cycle
    for (const { caller, callee } of edges) if (caller in depth && !(depth[callee] >= depth[caller] + 1)) depth[callee] = depth[caller] + 1;
  for (const node of nodes) depth[node] ??= 0; // not reached from the gateway
  const columns = [];
  for (const [node, d] of Object.entries(depth)) (columns[d] ||= []).push(node);
  const [width, rowHeight, boxWidth, boxHeight] = [150, 44, 110, 26];
  const at = {};
  columns.forEach((nodes, column) => nodes.sort().forEach((node, row) => (at[node] = { x: 10 + column * width, y: 10 + row * rowHeight })));
  const rate = Object.fromEntries(load.map((l) => [l.service, l.requestsPerSecond]));
  const down = new Set(processes.filter((p) => p.state !== "running").map((p) => p.service));
  const height = 20 + Math.max(...columns.map((nodes) => nodes.length)) * rowHeight;
  return s("svg", { class: "topology", width: 20 + columns.length * width, height, role: "img" },
    edges.filter((e) => e.caller in at && e.callee in at).map(({ caller, callee }) => s("line", {
      class: "edge", x1: at[caller].x + boxWidth, y1: at[caller].y + boxHeight / 2, x2: at[callee].x, y2: at[callee].y + boxHeight / 2,
      "stroke-width": (1 + Math.min(8, Math.log1p(rate[callee] || 0) * 2)).toFixed(1), dataset: { caller, callee } },
      s("title", {}, `${caller} → ${callee}: ${formatNumber(rate[callee] || 0, 1)}/s`))),
    Object.entries(at).map(([node, { x, y }]) => s("g", { class: `node${down.has(node) ? " down" : ""}`, dataset: { node } },
      s("rect", { x, y, width: boxWidth, height: boxHeight, rx: 4 }),
      s("text", { x: x + boxWidth / 2, y: y + 17, "text-anchor": "middle" }, node))));
}

function waterfall(trace) {
  const [labelWidth, plot, row] = [220, 520, 20];
  const scale = plot / Math.max(trace.durationMs, 1e-6);
  return s("svg", { class: "waterfall", width: labelWidth + plot + 80, height: trace.spans.length * row + 4, role: "img" },
    trace.spans.map((span, i) => s("g", { class: `span${span.error ? " error" : ""}`, dataset: { service: span.service } },
      s("text", { x: 4 + span.depth * 10, y: i * row + 15 }, `${span.service} ${span.name}`),
      s("rect", { x: labelWidth + span.offsetMs * scale, y: i * row + 4, width: Math.max(1, span.durationMs * scale), height: row - 6 }),
      s("text", { x: labelWidth + (span.offsetMs + span.durationMs) * scale + 4, y: i * row + 15, class: "value" }, `${formatNumber(span.durationMs, 2)} ms`),
      s("title", {}, Object.entries(span.attributes).map(([k, v]) => `${k}=${v}`).join("\n")))));
}

export function render(main) {
  const status = h("div", { id: "mesh-status" });
  const traces = h("div", { id: "slow-traces" });
  const opened = h("div", { id: "trace" });
  const tracesPage = { page: 0 };
  replace(main, h("h2", {}, t("nav.services")), status, h("section", { class: "card" }, h("h3", {}, t("services.slowest")), traces, opened), configSection());
  const openTrace = async (id) => {
    try {
      const trace = await call(path`/v1/traces/${id}`);
      replace(opened, h("h4", {}, t("services.trace", { id, ms: formatNumber(trace.durationMs, 2) })), waterfall(trace));
    } catch (error) {
      replace(opened, errorBox(error));
    }
  };
  const refresh = async () => {
    try {
      const mesh = await call("/v1/mesh/status");
      replace(status,
        h("section", { class: "card" }, h("h3", {}, t("services.topology")), h("p", { class: "hint" }, mesh.sidecars ? t("services.sidecars") : t("services.noSidecars")), topology(mesh.edges, mesh.load, mesh.processes)),
        h("div", { class: "columns" },
          h("section", { class: "card" }, h("h3", {}, t("services.processes")), processesTable(mesh.processes)),
          h("section", { class: "card" }, h("h3", {}, t("services.load", { seconds: formatNumber(mesh.windowSeconds, 0) })), loadTable(mesh.load))));
      const slow = await call(`/v1/traces:slowest?count=${SLOW_TRACES}`);
      replace(traces, slow.traces.length ? paged(slow.traces, (page) => h("ul", {}, page.map((trace) => h("li", {},
        h("a", { href: "#/services", onclick: (event) => { event.preventDefault(); openTrace(trace.traceId); }, dataset: { trace: trace.traceId } },
          `${formatNumber(trace.durationMs, 2)} ms`), ` ${trace.service} ${trace.what}${trace.error ? ` · ${t("services.failed")}` : ""}`))), { size: TRACES_PER_PAGE, state: tracesPage })
        : h("p", {}, t("services.noTraces")));
    } catch (error) {
      replace(status, errorBox(error));
    }
  };
  const timer = setInterval(refresh, REFRESH_MS);
  window.addEventListener("hashchange", () => clearInterval(timer), { once: true });
  refresh();
}
