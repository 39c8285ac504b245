// Reports: a training report (of a job, or kept with a model version): accuracy and F1,
// per-class bars, the confusion matrix as a heatmap whose cells open the misclassified
// examples, the top features per class, the time per phase and a tuning job's trials; two
// versions' reports side by side.

import { call, path } from "./api.js";
import { formatNumber, h, paged, replace } from "./dom.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";
import { bars, heatmap } from "./svg.js";
import { listVersions } from "./models.js";
import { stateName } from "./train.js";

const TOP_FEATURES = 8;

function examples(report, row, column) {
  const [truth, predicted] = [report.labels[row], report.labels[column]];
  const found = report.misclassified.filter((m) => m.label === truth && m.predicted === predicted);
  return h("section", { class: "card", id: "examples", dataset: { label: truth, predicted } },
    h("h3", {}, t("report.examplesOf", { truth, predicted })),
    row === column ? h("p", {}, t("report.correct")) : found.length ? h("ul", {}, found.map((m) => h("li", {}, m.text, h("span", { class: "hint" }, ` (${formatNumber(m.score)})`))))
      : h("p", {}, t("report.noSample")));
}

function figures(report, side = "") {
  const stats = report.statistics || {};
  return h("div", { class: "figures" },
    h("div", { class: "figure", id: `${side}accuracy`, dataset: { value: String(report.accuracy) } }, h("span", {}, t("report.accuracy")), h("strong", {}, formatNumber(report.accuracy, 4))),
    h("div", { class: "figure", id: `${side}macro-f1`, dataset: { value: String(report.macroF1) } }, h("span", {}, t("report.macroF1")), h("strong", {}, formatNumber(report.macroF1, 4))),
    h("div", { class: "figure" }, h("span", {}, t("report.weightedF1")), h("strong", {}, formatNumber(report.weightedF1, 4))),
    h("div", { class: "figure" }, h("span", {}, t("report.documents")), h("strong", {}, `${stats.trainDocuments ?? "–"} / ${stats.testDocuments ?? "–"}`)));
}

// A tuning job's trials, the best first marked; what each changed from the job's configuration.
function trialsTable(trials) {
  const changes = (trial) => Object.entries(trial.changes || {}).map(([key, value]) => h("span", { class: "tag" }, `${key}=${JSON.stringify(value)}`));
  return h("section", { class: "card", id: "trials" }, h("h3", {}, t("report.trials", { count: trials.length })),
    paged(trials, (page) => h("table", { class: "trials" },
      h("thead", {}, h("tr", {}, ["#", t("report.trialChanges"), t("report.trialScore"), "±", t("report.trialSeconds"), ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, page.map((trial) => h("tr", { class: trial.best ? "best" : "", dataset: { trial: String(trial.number), score: String(trial.score) } },
        h("td", { class: "number" }, trial.number), h("td", {}, changes(trial)), h("td", { class: "number" }, formatNumber(trial.score, 4)),
        h("td", { class: "number" }, formatNumber(trial.scoreStd ?? 0, 4)), h("td", { class: "number" }, formatNumber(trial.seconds ?? 0, 2)),
        h("td", {}, trial.best ? t("report.bestTrial") : "")))))));
}

function showReport(container, title, report) {
  const matrix = report.confusion.map((row) => row.counts.map(Number));
  const picked = h("div", { id: "picked" });
  const phases = Object.entries(report.phaseSeconds);
  replace(
    container,
    h("h3", {}, title),
    h("p", { class: "hint" }, report.evaluation),
    figures(report),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h3", {}, t("report.perClass")), bars(report.classes.map((c) => ({ label: c.label, value: c.f1 })), { className: "per-class" }),
        h("table", { class: "classes" }, h("thead", {}, h("tr", {}, ["", t("report.precision"), t("report.recall"), "F1", t("report.support")].map((c) => h("th", {}, c)))),
          h("tbody", {}, report.classes.map((c) => h("tr", {}, h("td", {}, c.label), [c.precision, c.recall, c.f1].map((v) => h("td", { class: "number" }, formatNumber(v))), h("td", { class: "number" }, c.support)))))),
      h("section", { class: "card" }, h("h3", {}, t("report.confusion")), h("p", { class: "hint" }, t("report.confusionHelp")),
        heatmap(report.labels, matrix, { onCell: (row, column) => replace(picked, examples(report, row, column)) }), picked)),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h3", {}, t("report.phases")), bars(phases.map(([phase, seconds]) => ({ label: phase, value: seconds })), { max: Math.max(...phases.map(([, s]) => s), 1e-9), digits: 2, className: "phases" })),
      h("section", { class: "card" }, h("h3", {}, t("report.topFeatures")),
        report.informativeFeatures.map((group) => h("div", { class: "top-features" }, h("strong", {}, group.label), " ",
          group.features.slice(0, TOP_FEATURES).map((f) => h("span", { class: "tag", title: formatNumber(f.weight) }, f.feature)))))),
    report.trials?.length ? trialsTable(report.trials) : null,
  );
}

// A choice of another version of the model whose report then shows beside this one.
async function compareChooser(name, version) {
  const others = (await listVersions(name)).filter((v) => v.version !== version);
  if (!others.length) return null;
  const choice = h("select", { id: "compare-with", onchange: (event) => event.target.value && (location.hash = `#/reports/compare/${encodeURIComponent(name)}/${encodeURIComponent(version)}/${encodeURIComponent(event.target.value)}`) },
    h("option", { value: "" }, "–"), others.map((v) => h("option", { value: v.version }, v.version)));
  return h("label", { class: "inline compare" }, t("report.compareWith"), " ", choice);
}

// Two versions' reports in two columns: the figures, per-class F1 with the difference, the
// confusion matrices.
function showComparison(container, name, versions, reports) {
  const labels = [...new Set(reports.flatMap((report) => report.labels))];
  const f1 = reports.map((report) => Object.fromEntries(report.classes.map((c) => [c.label, c.f1])));
  const delta = (label) => (label in f1[0] && label in f1[1] ? formatNumber(f1[1][label] - f1[0][label]) : "–");
  replace(container,
    h("h3", {}, t("report.comparison", { name, a: versions[0], b: versions[1] })),
    h("div", { class: "side-by-side" }, reports.map((report, i) => h("section", { class: "card", dataset: { side: String(i), version: versions[i] } },
      h("h4", {}, `${name} ${versions[i]}`), h("p", { class: "hint" }, report.evaluation), figures(report, `side-${i}-`),
      h("h4", {}, t("report.confusion")), heatmap(report.labels, report.confusion.map((row) => row.counts.map(Number)), { cell: 36 })))),
    h("section", { class: "card" }, h("h3", {}, t("report.perClass")),
      h("table", { class: "compare-classes" },
        h("thead", {}, h("tr", {}, h("th", {}), versions.map((v) => h("th", {}, `F1 ${v}`)), h("th", {}, "Δ"))),
        h("tbody", {}, labels.map((label) => h("tr", { dataset: { label } }, h("td", {}, label),
          f1.map((byLabel) => h("td", { class: "number" }, label in byLabel ? formatNumber(byLabel[label]) : "–")), h("td", { class: "number delta" }, delta(label))))))));
}

async function pickList(container) {
  const { jobs } = await call("/v1/jobs");
  const done = jobs.filter((job) => stateName(job.state) === "succeeded");
  replace(container, h("section", { class: "card" }, h("h3", {}, t("report.pick")),
    done.length ? paged(done, (page) => h("ul", {}, page.map((job) => h("li", {}, h("a", { href: `#/reports/${encodeURIComponent(job.id)}` }, job.id), ` ${job.model} ${job.version}`))))
      : h("p", {}, t("report.none"))));
}

export function render(main, args) {
  const container = h("div", { id: "report" });
  replace(main, h("h2", {}, t("nav.reports")), container);
  const load = async () => {
    if (args[0] === "compare") {
      const [, name, ...versions] = args;
      const answers = await Promise.all(versions.slice(0, 2).map((version) => call(path`/v1/models/${name}/versions/${version}`)));
      showComparison(container, name, answers.map((a) => a.version.version), answers.map((a) => a.version.report));
    } else if (args[0] === "model") {
      const [, name, version] = args;
      const answer = await call(path`/v1/models/${name}/versions/${version}`);
      showReport(container, t("report.ofVersion", { name, version: answer.version.version }), answer.version.report);
      const chooser = await compareChooser(name, answer.version.version);
      if (chooser) container.prepend(chooser);
    } else if (args[0]) {
      const answer = await call(path`/v1/jobs/${args[0]}/report`);
      showReport(container, t("report.ofJob", { id: args[0] }), answer.report);
    } else await pickList(container);
  };
  load().catch((error) => replace(container, errorBox(error, { retry: () => render(main, args) })));
}
