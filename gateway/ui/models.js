// Models: every version of a model side by side with its metrics, the aliases and their
// history, the model's experiments with each arm's traffic and online accuracy; promote a
// version (point an alias at it), roll an alias back, start, re-weight and end an experiment,
// as an admin.

import { call, mayAct, path } from "./api.js";
import { formatNumber, h, paged, replace } from "./dom.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";
import { heatmap } from "./svg.js";

const PRODUCTION = "production";
const LEADER = "\u0000leader"; // the winner choice that leaves the pick to the registry (no arm has this name)

export async function listModels() {
  return (await call("/v1/models")).models;
}

export async function listVersions(name) {
  return (await call(`/v1/versions?name=${encodeURIComponent(name)}`)).versions;
}

// A model and one of its versions or aliases ("": what the name answers with).
export function modelChooser() {
  const model = h("select", { id: "model" });
  const version = h("select", { id: "version" });
  const status = h("span", { class: "hint" });
  const element = h("div", { class: "row" }, h("label", {}, t("models.model"), model), h("label", {}, t("models.version"), version), status);
  let summaries = [];
  const fillVersions = async () => {
    const summary = summaries.find((m) => m.name === model.value);
    replace(version, h("option", { value: "" }, t("models.defaultVersion")));
    if (!summary) return;
    for (const [alias, target] of Object.entries(summary.aliases)) version.append(h("option", { value: alias }, `@${alias} → ${target}`));
    try {
      const found = await listVersions(summary.name);
      if (model.value !== summary.name) return; // another model was chosen meanwhile
      for (const v of found) version.append(h("option", { value: v.version }, v.version));
    } catch (error) {
      replace(status, errorBox(error));
    }
  };
  model.addEventListener("change", fillVersions);
  listModels()
    .then((found) => {
      summaries = found;
      replace(model, found.map((m) => h("option", { value: m.name }, m.name)));
      if (!found.length) replace(status, t("models.none"));
      return fillVersions();
    })
    .catch((error) => replace(status, errorBox(error)));
  return { element, value: () => ({ model: model.value, version: version.value }) };
}

function versionsTable(versions, labels, promote) {
  const metric = (value) => (value === undefined ? "–" : formatNumber(value));
  return h(
    "table",
    { class: "versions" },
    h("thead", {}, h("tr", {}, h("th", {}, t("models.version")), h("th", {}, t("models.created")), h("th", {}, t("report.accuracy")),
      h("th", {}, t("report.macroF1")), labels.map((label) => h("th", {}, `F1 ${label}`)), h("th", {}, t("models.aliases")),
      h("th", {}, t("models.tags")), h("th", {}))),
    h("tbody", {}, versions.map((v) => h("tr", { dataset: { version: v.version } },
      h("td", {}, h("a", { href: `#/reports/model/${encodeURIComponent(v.name)}/${encodeURIComponent(v.version)}` }, v.version)),
      h("td", {}, `${new Date(v.created).toLocaleString()} · ${v.createdBy}`),
      h("td", { class: "number" }, metric(v.metrics?.accuracy)),
      h("td", { class: "number" }, metric(v.metrics?.macroF1)),
      labels.map((label) => h("td", { class: "number" }, metric(v.metrics?.perClass?.[label]?.f1))),
      h("td", {}, v.aliases.map((alias) => h("span", { class: "alias" }, alias))),
      h("td", {}, Object.entries(v.tags).map(([key, value]) => h("span", { class: "tag" }, `${key}=${value}`))),
      h("td", {}, v.aliases.includes(PRODUCTION) ? null : h("button", { type: "button", class: "promote", onclick: () => promote(v.version) }, t("models.promote")))))),
  );
}

const short = (digest) => (digest ? digest.slice(0, 12) : "–");

// Where each version came from: the dataset (its digest, so equal data shows equal), the
// job that trained it, the code, the dictionary and stopwords, every stage's configuration.
function lineageTable(versions) {
  return h("table", { class: "lineage" },
    h("thead", {}, h("tr", {}, [t("models.version"), t("lineage.dataset"), t("lineage.documents"), t("lineage.job"), t("lineage.code"), t("lineage.resources"), t("lineage.config")].map((c) => h("th", {}, c)))),
    h("tbody", {}, versions.map(({ version, lineage = {} }) => h("tr", { dataset: { version, datasetSha256: lineage.datasetSha256 || "" } },
      h("td", {}, version),
      h("td", {}, lineage.datasetSource || "–", " ", h("code", { class: "digest", title: lineage.datasetSha256 }, short(lineage.datasetSha256)),
        lineage.testDatasetSha256 ? h("span", { class: "hint" }, ` ${t("lineage.testedOn")} `, h("code", { title: lineage.testDatasetSha256 }, short(lineage.testDatasetSha256))) : null),
      h("td", { class: "number" }, lineage.datasetDocuments ?? "–"),
      h("td", {}, lineage.job ? h("a", { href: `#/train/${encodeURIComponent(lineage.job)}`, class: "lineage-job" }, lineage.job) : "–"),
      h("td", {}, lineage.codeVersion || "–"),
      h("td", {}, h("code", { title: lineage.dictionarySha256 }, short(lineage.dictionarySha256)), " / ", h("code", { title: lineage.stopwordsSha256 }, short(lineage.stopwordsSha256))),
      h("td", {}, lineage.config ? h("details", {}, h("summary", {}, t("lineage.show")), h("pre", {}, JSON.stringify(lineage.config, null, 2))) : "–")))));
}

function historyTable(moves, rollback) {
  return h(
    "table",
    { class: "history" },
    h("thead", {}, h("tr", {}, ["#", t("models.alias"), t("models.from"), t("models.to"), t("models.by"), t("models.when"), t("models.reason"), ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, moves.map((m) => h("tr", {},
      h("td", {}, m.sequence), h("td", {}, m.alias), h("td", {}, m.fromVersion || "–"), h("td", {}, m.toVersion || "–"),
      h("td", {}, m.movedBy), h("td", {}, new Date(m.moved).toLocaleString()), h("td", {}, m.reason),
      h("td", {}, h("button", { type: "button", class: "rollback", onclick: () => rollback(m.alias) }, t("models.rollback")))))),
  );
}

// Re-weighting goes through the live configuration (experiments.<name>), so the change is
// in the configuration history with its reason; ending may point production at an arm.
function experimentControls(experiment, act) {
  const weights = experiment.arms.map((arm) => h("input", { type: "number", min: 0, step: "any", value: arm.weight, class: "arm-weight", dataset: { arm: arm.name } }));
  const reason = h("input", { class: "experiment-reason", placeholder: t("models.reasonPlaceholder") });
  const winner = h("select", { class: "promote-arm" },
    h("option", { value: "" }, t("experiments.noPromotion")),
    h("option", { value: LEADER }, t("experiments.theLeader")),
    experiment.arms.map((arm) => h("option", { value: arm.name }, `${arm.name} (${arm.version})`)));
  const reweight = () => act(async () => {
    const value = weights.map((input) => `${input.dataset.arm}=${input.value}`).join(",");
    const { change } = await call("/v1/config:set", { method: "POST", body: { key: `experiments.${experiment.name}`, value, reason: reason.value } });
    return t("experiments.reweighted", { name: experiment.name, after: change.after });
  });
  const end = () => act(async () => {
    const promoted = winner.value ? { promoteAlias: PRODUCTION, winner: winner.value === LEADER ? "" : winner.value } : {};
    await call(path`/v1/experiments/${experiment.name}:end`, { method: "POST", body: { ...promoted, reason: reason.value } });
    return t("experiments.endedNotice", { name: experiment.name });
  });
  return h("div", { class: "row experiment-controls" },
    experiment.arms.map((arm, i) => h("label", {}, `${t("experiments.weight")} ${arm.name}`, weights[i])),
    h("label", {}, t("models.reason"), reason),
    h("button", { type: "button", class: "reweight", onclick: reweight }, t("experiments.reweight")),
    h("label", {}, t("experiments.promote"), winner),
    h("button", { type: "button", class: "end-experiment", onclick: end }, t("experiments.end")));
}

function armRow(targets, { name = "", target = "", weight = 1 } = {}) {
  return h("div", { class: "row arm" },
    h("label", {}, t("models.arm"), h("input", { class: "arm-name", required: true, value: name })),
    h("label", {}, t("experiments.target"), h("select", { class: "arm-target" }, targets.map((value) => h("option", { value, selected: value === target }, value)))),
    h("label", {}, t("experiments.weight"), h("input", { class: "arm-weight", type: "number", min: 0, step: "any", value: weight })));
}

function startForm(model, versions, act) {
  const aliases = [...new Set(versions.flatMap((v) => v.aliases))].sort();
  const targets = [...aliases, ...versions.map((v) => v.version).reverse()];
  const newest = versions[versions.length - 1]?.version || "";
  const name = h("input", { id: "experiment-name", required: true, placeholder: `${model}-ab` });
  const description = h("input", { id: "experiment-description" });
  const allocation = h("select", { id: "experiment-allocation" },
    h("option", { value: "ALLOCATION_FIXED" }, t("experiments.fixed")), h("option", { value: "ALLOCATION_THOMPSON" }, t("experiments.thompson")));
  const arms = h("div", { id: "experiment-arms" },
    armRow(targets, { name: "control", target: aliases.includes(PRODUCTION) ? PRODUCTION : newest }), armRow(targets, { name: "candidate", target: newest }));
  const form = h("form", { id: "experiment-form" }, h("h4", {}, t("experiments.startTitle")),
    h("div", { class: "row" }, h("label", {}, t("experiments.name"), name), h("label", {}, t("experiments.description"), description),
      h("label", {}, t("experiments.allocation"), allocation)),
    arms,
    h("button", { type: "button", id: "add-arm", onclick: () => arms.append(armRow(targets, { target: newest })) }, t("experiments.addArm")), " ",
    h("button", { type: "submit", class: "primary", id: "start-experiment" }, t("experiments.start")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(async () => {
      const body = {
        name: name.value.trim(), model, description: description.value, allocation: allocation.value,
        arms: [...arms.querySelectorAll(".arm")].map((row) => ({
          name: row.querySelector(".arm-name").value.trim(), target: row.querySelector(".arm-target").value, weight: Number(row.querySelector(".arm-weight").value),
        })),
      };
      await call("/v1/experiments", { method: "POST", body });
      return t("experiments.started", { name: body.name });
    });
  });
  return form;
}

// An arm's online confusion matrix (true label → predicted label → count, from feedback).
function armConfusion(score) {
  const confusion = score?.confusion || {};
  const labels = [...new Set(Object.entries(confusion).flatMap(([truth, { counts }]) => [truth, ...Object.keys(counts || {})]))].sort();
  const matrix = labels.map((truth) => labels.map((predicted) => Number(confusion[truth]?.counts?.[predicted] || 0)));
  return h("figure", { class: "arm-confusion", dataset: { arm: score?.arm || "" } }, h("figcaption", {}, t("experiments.confusionOf", { arm: score?.arm })),
    labels.length ? heatmap(labels, matrix, { cell: 32 }) : h("p", { class: "hint" }, t("experiments.noFeedback")));
}

function experimentCard(experiment, act) {
  const scores = Object.fromEntries(experiment.scores.map((score) => [score.arm, score]));
  const total = experiment.arms.reduce((sum, arm) => sum + arm.weight, 0) || 1;
  return h("div", { class: "experiment", dataset: { experiment: experiment.name, running: String(experiment.running) } },
    h("h4", {}, experiment.name, " · ", experiment.running ? t("models.running") : t("models.ended"), experiment.leader ? ` · ${t("models.leader", { arm: experiment.leader })}` : ""),
    experiment.description ? h("p", { class: "hint" }, experiment.description) : null,
    h("table", { class: "arms" },
      h("thead", {}, h("tr", {}, [t("models.arm"), t("models.target"), t("models.traffic"), t("models.predictions"), t("models.feedback"), t("models.onlineAccuracy")].map((c) => h("th", {}, c)))),
      h("tbody", {}, experiment.arms.map((arm) => h("tr", { dataset: { arm: arm.name } },
        h("td", {}, arm.name), h("td", {}, `${arm.target} → ${arm.version}`),
        h("td", { class: "number weight" }, `${formatNumber((100 * arm.weight) / total, 1)} %`),
        h("td", { class: "number" }, scores[arm.name]?.predictions ?? 0), h("td", { class: "number" }, scores[arm.name]?.feedback ?? 0),
        h("td", { class: "number" }, Number(scores[arm.name]?.feedback) ? formatNumber(scores[arm.name].accuracy) : "–"))))),
    h("div", { class: "arm-confusions" }, experiment.arms.map((arm) => armConfusion(scores[arm.name] || { arm: arm.name }))),
    experiment.running && mayAct("admin") ? experimentControls(experiment, act) : null);
}

async function showModel(container, name) {
  const [versions, history, { experiments }] = await Promise.all([listVersions(name), call(path`/v1/models/${name}/history`), call("/v1/experiments?all=true")]);
  const ours = experiments.filter((experiment) => experiment.model === name);
  const labels = [...new Set(versions.flatMap((v) => v.labels))];
  const notice = h("div", { id: "models-notice" });
  const reason = h("input", { id: "reason", placeholder: t("models.reasonPlaceholder") });
  const act = async (request) => {
    try {
      const answer = await request();
      await showModel(container, name);
      container.prepend(h("p", { class: "done", role: "status" }, t("models.moved", { alias: answer.move.alias, from: answer.move.fromVersion || "–", to: answer.move.toVersion })));
    } catch (error) {
      replace(notice, errorBox(error, { needs: "admin" }));
    }
  };
  // An experiment's action: on success the model is shown again with what happened said.
  const experimentNotice = h("div", { id: "experiments-notice" });
  const experimentAct = async (request) => {
    try {
      const said = await request();
      await showModel(container, name);
      container.querySelector("#experiments-notice").append(h("p", { class: "done", role: "status" }, said));
    } catch (error) {
      replace(experimentNotice, errorBox(error, { needs: "admin" }));
    }
  };
  const promote = (version) =>
    act(() => call(path`/v1/models/${name}/aliases/${PRODUCTION}`, { method: "PUT", body: { version, reason: reason.value || t("models.promotedFromConsole") } }));
  const rollback = (alias) => act(() => call(path`/v1/models/${name}/aliases/${alias}:rollback`, { method: "POST", body: { reason: reason.value } }));
  replace(
    container,
    h("section", { class: "card" }, h("h3", {}, t("models.versionsOf", { name })),
      mayAct("admin") ? null : h("p", { class: "hint" }, t("models.adminOnly")),
      h("label", {}, t("models.reason"), reason), notice, paged(versions, (page) => versionsTable(page, labels, promote))),
    h("section", { class: "card", id: "lineage" }, h("h3", {}, t("lineage.title")), paged(versions, lineageTable)),
    h("section", { class: "card" }, h("h3", {}, t("models.history")), history.moves.length ? paged(history.moves.slice().reverse(), (page) => historyTable(page, rollback)) : h("p", {}, t("models.noHistory"))),
    h("section", { class: "card", id: "experiments" }, h("h3", {}, t("models.experiments")), experimentNotice,
      mayAct("admin") ? null : h("p", { class: "hint" }, t("experiments.adminOnly")),
      ours.length ? ours.map((experiment) => experimentCard(experiment, experimentAct)) : h("p", {}, t("models.noExperiments")),
      mayAct("admin") && !ours.some((experiment) => experiment.running) ? startForm(name, versions, experimentAct) : null),
  );
}

export function render(main, [chosen]) {
  const detail = h("div", { id: "model-detail" });
  const tabs = h("nav", { class: "tabs" });
  replace(main, h("h2", {}, t("nav.models")), tabs, detail);
  listModels()
    .then((models) => {
      if (!models.length) return replace(detail, h("p", {}, t("models.none")));
      const name = chosen || models[0].name;
      replace(tabs, models.map((m) => h("a", { href: `#/models/${encodeURIComponent(m.name)}`, class: m.name === name ? "current" : null },
        `${m.name} (${m.versions})`, m.experiment ? ` · ${t("models.experiment", { name: m.experiment })}` : "")));
      return showModel(detail, name);
    })
    .catch((error) => replace(detail, errorBox(error, { retry: () => render(main, [chosen]) })));
}
