// Reports: a training report (of a job, or kept with a model version): accuracy and F1,
// per-class bars, the confusion matrix as a heatmap whose cells open the misclassified
// examples, the top features per class and the time per phase.

import { call, path } from "./api.js";
import { formatNumber, h, replace } from "./dom.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";
import { bars, heatmap } from "./svg.js";
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

function showReport(container, title, report) {
  const matrix = report.confusion.map((row) => row.counts.map(Number));
  const picked = h("div", { id: "picked" });
  const phases = Object.entries(report.phaseSeconds);
  const stats = report.statistics || {};
  replace(
    container,
    h("h3", {}, title),
    h("p", { class: "hint" }, report.evaluation),
    h("div", { class: "figures" },
      h("div", { class: "figure", id: "accuracy", dataset: { value: String(report.accuracy) } }, h("span", {}, t("report.accuracy")), h("strong", {}, formatNumber(report.accuracy, 4))),
      h("div", { class: "figure", id: "macro-f1", dataset: { value: String(report.macroF1) } }, h("span", {}, t("report.macroF1")), h("strong", {}, formatNumber(report.macroF1, 4))),
      h("div", { class: "figure" }, h("span", {}, t("report.weightedF1")), h("strong", {}, formatNumber(report.weightedF1, 4))),
      h("div", { class: "figure" }, h("span", {}, t("report.documents")), h("strong", {}, `${stats.trainDocuments ?? "–"} / ${stats.testDocuments ?? "–"}`))),
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
  );
}

async function pickList(container) {
  const { jobs } = await call("/v1/jobs");
  const done = jobs.filter((job) => stateName(job.state) === "succeeded");
  replace(container, h("section", { class: "card" }, h("h3", {}, t("report.pick")),
    done.length ? h("ul", {}, done.map((job) => h("li", {}, h("a", { href: `#/reports/${encodeURIComponent(job.id)}` }, job.id), ` ${job.model} ${job.version}`)))
      : h("p", {}, t("report.none"))));
}

export function render(main, args) {
  const container = h("div", { id: "report" });
  replace(main, h("h2", {}, t("nav.reports")), container);
  const load = async () => {
    if (args[0] === "model") {
      const [, name, version] = args;
      const answer = await call(path`/v1/models/${name}/versions/${version}`);
      showReport(container, t("report.ofVersion", { name, version: answer.version.version }), answer.version.report);
    } else if (args[0]) {
      const answer = await call(path`/v1/jobs/${args[0]}/report`);
      showReport(container, t("report.ofJob", { id: args[0] }), answer.report);
    } else await pickList(container);
  };
  load().catch((error) => replace(container, errorBox(error, { retry: () => render(main, args) })));
}
