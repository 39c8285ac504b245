// Datasets and training: upload a dataset (its problems by line when it is refused), start
// a training job, watch it live, cancel it.

import { call, path, stream } from "./api.js";
import { formatNumber, h, paged, replace } from "./dom.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";

// Bytes per message of the upload stream (base64 makes each a third larger).
const CHUNK_BYTES = 192 * 1024;
const ALGORITHMS = ["ALGORITHM_UNSPECIFIED", "ALGORITHM_LINEAR_SVM", "ALGORITHM_LOGISTIC_REGRESSION", "ALGORITHM_COMPLEMENT_NB", "ALGORITHM_MULTINOMIAL_NB", "ALGORITHM_SGD"];
// What a tuning search may try (the default, ALGORITHM_UNSPECIFIED, is the ensemble's name there).
const SEARCHED_ALGORITHMS = ["ALGORITHM_ENSEMBLE", ...ALGORITHMS.slice(1)];
const SELECTIONS = ["FEATURE_SELECTION_NONE", "FEATURE_SELECTION_CHI2", "FEATURE_SELECTION_MUTUAL_INFO", "FEATURE_SELECTION_ANOVA_F"];
const FORMATS = ["DATASET_FORMAT_UNSPECIFIED", "DATASET_FORMAT_TSV", "DATASET_FORMAT_CSV", "DATASET_FORMAT_JSONL"];
const ENDED = new Set(["succeeded", "failed", "cancelled"]);
const RECENT_JOBS = 200; // the newest jobs; the list pages through them
const JOBS_PER_PAGE = 10;

export const stateName = (state) => String(state || "").replace(/^JOB_STATE_/, "").toLowerCase();

function base64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// The datasets service lists an upload's problems as "...: line 3: ...; line 9: ...".
export function problemsByLine(message) {
  const first = message.search(/line \d+: /);
  if (first < 0) return [];
  return message
    .slice(first)
    .split(/; (?=line \d+: )/)
    .map((problem) => {
      const [, line, what] = problem.match(/^line (\d+): (.*)$/s);
      return { line: Number(line), what };
    });
}

// "a, b" or one per line: the values in order, without the empty ones.
export const listOf = (text) => text.split(/[,，\n]/).map((value) => value.trim()).filter(Boolean);

// options: the first message's format, text_column, label_column and label_names.
async function upload(file, name, options) {
  const messages = [];
  for (let offset = 0; offset === 0 || offset < file.size; offset += CHUNK_BYTES) {
    messages.push({ chunk: await base64(file.slice(offset, offset + CHUNK_BYTES)) });
  }
  Object.assign(messages[0], options, { name: name || file.name, fileName: file.name, sizeBytes: String(file.size) });
  return call("/v1/datasets", { method: "POST", body: messages });
}

// How the file is read: its format (else from its suffix), the columns of a CSV or JSON
// lines file, and the names integer labels stand for.
function readingOptions() {
  const format = h("select", { id: "dataset-format" }, FORMATS.map((f) => h("option", { value: f }, t(`format.${f}`))));
  const textColumn = h("input", { id: "dataset-text-column", placeholder: "text" });
  const labelColumn = h("input", { id: "dataset-label-column", placeholder: "label" });
  const labelNames = h("textarea", { id: "dataset-label-names", rows: 2, placeholder: t("train.labelNamesPlaceholder") });
  const element = h("details", { class: "options", id: "dataset-options" }, h("summary", {}, t("train.readingOptions")),
    h("div", { class: "row" }, h("label", {}, t("train.format"), format), h("label", {}, t("train.textColumn"), textColumn),
      h("label", {}, t("train.labelColumn"), labelColumn)),
    h("label", {}, t("train.labelNames"), labelNames), h("p", { class: "hint" }, t("train.labelNamesHelp")));
  const value = () => ({ format: format.value, textColumn: textColumn.value.trim(), labelColumn: labelColumn.value.trim(), labelNames: listOf(labelNames.value) });
  return { element, value };
}

function datasetSummary(dataset, existed) {
  return h("div", { class: "done", role: "status", dataset: { dataset: dataset.id } },
    h("strong", {}, existed ? t("train.existed", { id: dataset.id }) : t("train.stored", { id: dataset.id })),
    h("p", {}, t("train.datasetFigures", { documents: dataset.documents, labels: Object.keys(dataset.labelCounts).length })),
    h("p", {}, Object.entries(dataset.labelCounts).map(([label, count]) => h("span", { class: "tag" }, `${label}: ${count}`))));
}

function refusal(error) {
  const problems = problemsByLine(error.message);
  if (error.status !== 400 || !problems.length) return errorBox(error, { needs: "trainer" });
  return h("div", { class: "error", role: "alert" }, h("strong", {}, t("train.refused", { count: problems.length })),
    h("ol", { class: "problems" }, problems.map((p) => h("li", { dataset: { line: String(p.line) } }, h("strong", {}, t("train.line", { line: p.line })), " ", p.what))));
}

function uploadForm(onStored) {
  const file = h("input", { id: "dataset-file", type: "file", accept: ".txt,.tsv,.csv,.jsonl", required: true });
  const name = h("input", { id: "dataset-name", placeholder: t("train.datasetNamePlaceholder") });
  const options = readingOptions();
  const result = h("div", { id: "upload-result" });
  const button = h("button", { type: "submit", class: "primary", id: "upload" }, t("train.upload"));
  const form = h("form", { class: "card" }, h("h3", {}, t("train.uploadTitle")), h("p", { class: "hint" }, t("train.formats")),
    h("div", { class: "row" }, h("label", {}, t("train.file"), file), h("label", {}, t("train.datasetName"), name)), options.element, button, result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    replace(result, h("p", { class: "busy" }, t("busy")));
    try {
      const answer = await upload(file.files[0], name.value, options.value());
      replace(result, datasetSummary(answer.dataset, answer.existed));
      onStored(answer.dataset.id);
    } catch (error) {
      replace(result, refusal(error));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

// "1-2, 1-3": n-gram ranges; a value that is not one is named in the error.
export function rangesOf(text) {
  return listOf(text).map((value) => {
    const found = value.match(/^(\d+)\s*[-–~]\s*(\d+)$/);
    if (!found) throw new RangeError(t("train.badRange", { value }));
    return { min: Number(found[1]), max: Number(found[2]) };
  });
}

function numbersOf(text, field) {
  return listOf(text).map((value) => {
    if (!/^\d+(\.\d+)?$/.test(value)) throw new RangeError(t("train.badNumber", { value, field }));
    return Number(value);
  });
}

const checkboxes = (name, values) =>
  h("fieldset", { class: "choices", dataset: { field: name } }, h("legend", {}, t(`space.${name}`)),
    values.map((value) => h("label", { class: "inline" }, h("input", { type: "checkbox", value }), t(`${name === "algorithms" ? "algorithm" : "selection"}.${value}`))));

// A tuning job's search space; every field left empty takes fenlei's default search.
function searchSpace() {
  const algorithms = checkboxes("algorithms", SEARCHED_ALGORITHMS);
  const selections = checkboxes("selections", SELECTIONS);
  const field = (id) => h("input", { id: `space-${id}`, placeholder: t("space.default") });
  const [topK, wordNgrams, charNgrams, regularization] = ["top-k", "word-ngrams", "char-ngrams", "regularization"].map(field);
  const folds = h("input", { id: "space-folds", type: "number", min: 0, max: 10, placeholder: t("space.default") });
  const maxTrials = h("input", { id: "space-max-trials", type: "number", min: 0, max: 200, placeholder: t("space.default") });
  const element = h("fieldset", { id: "search-space", class: "space", hidden: true }, h("legend", {}, t("space.title")), h("p", { class: "hint" }, t("space.help")),
    h("div", { class: "row" }, algorithms, selections),
    h("div", { class: "row" }, h("label", {}, t("space.topK"), topK), h("label", {}, t("space.wordNgrams"), wordNgrams),
      h("label", {}, t("space.charNgrams"), charNgrams), h("label", {}, t("space.regularization"), regularization)),
    h("div", { class: "row" }, h("label", {}, t("space.folds"), folds), h("label", {}, t("space.maxTrials"), maxTrials)));
  const checked = (set) => [...set.querySelectorAll("input:checked")].map((input) => input.value);
  const value = () => ({
    algorithms: checked(algorithms), selections: checked(selections),
    topK: numbersOf(topK.value, t("space.topK")), wordNgrams: rangesOf(wordNgrams.value), charNgrams: rangesOf(charNgrams.value),
    regularization: numbersOf(regularization.value, t("space.regularization")), folds: Number(folds.value) || 0, maxTrials: Number(maxTrials.value) || 0,
  });
  return { element, value };
}

function jobForm() {
  const model = h("input", { id: "job-model", required: true, placeholder: "reviews" });
  const dataset = h("select", { id: "job-dataset", required: true });
  const algorithm = h("select", { id: "job-algorithm" }, ALGORITHMS.map((a) => h("option", { value: a }, t(`algorithm.${a}`))));
  const testFraction = h("input", { id: "job-test-fraction", type: "number", min: 0.05, max: 0.5, step: 0.05, value: 0.2 });
  const folds = h("input", { id: "job-folds", type: "number", min: 0, max: 10, value: 0 });
  const space = searchSpace();
  const tune = h("input", { id: "job-tune", type: "checkbox", onchange: () => (space.element.hidden = !tune.checked) });
  const result = h("div", { id: "job-result" });
  const button = h("button", { type: "submit", class: "primary", id: "start-job" }, t("train.start"));
  const form = h("form", { class: "card" }, h("h3", {}, t("train.jobTitle")),
    h("div", { class: "row" }, h("label", {}, t("models.model"), model), h("label", {}, t("train.dataset"), dataset)),
    h("div", { class: "row" }, h("label", {}, t("train.algorithm"), algorithm), h("label", {}, t("train.testFraction"), testFraction),
      h("label", {}, t("train.folds"), folds), h("label", { class: "inline" }, tune, t("train.tune"))),
    space.element, button, result);
  const loadDatasets = async (selected) => {
    try {
      const { datasets } = await call("/v1/datasets");
      replace(dataset, datasets.map((d) => h("option", { value: d.id, selected: d.id === selected }, `${d.id} · ${d.name} · ${d.documents}`)));
    } catch (error) {
      replace(result, errorBox(error));
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const evaluation = Number(folds.value) > 1 ? { folds: Number(folds.value) } : { testFraction: Number(testFraction.value) };
    const body = { model: model.value, dataset: dataset.value, evaluation, tune: tune.checked, config: { classifier: { algorithm: algorithm.value } } };
    try {
      if (tune.checked) body.space = space.value();
    } catch (error) {
      return replace(result, h("div", { class: "error", role: "alert" }, error.message));
    }
    button.disabled = true;
    try {
      const { job } = await call("/v1/jobs", { method: "POST", body });
      location.hash = `#/train/${encodeURIComponent(job.id)}`;
    } catch (error) {
      replace(result, errorBox(error, { needs: "trainer" }));
    } finally {
      button.disabled = false;
    }
  });
  loadDatasets();
  return { element: form, loadDatasets };
}

function progressLine(progress) {
  if (!progress) return "";
  const done = Number(progress.documentsDone);
  const total = Number(progress.documentsTotal);
  const parts = [progress.phase];
  if (total) parts.push(t("train.documents", { done, total }));
  if (progress.trials) parts.push(t("train.trial", { trial: progress.trial, trials: progress.trials }));
  parts.push(t("train.elapsed", { seconds: formatNumber(progress.elapsedSeconds, 1) }));
  return parts.join(" · ");
}

function watchJob(id, onEnded) {
  const state = h("strong", { id: "job-state" });
  const bar = h("progress", { id: "job-progress", max: 1, value: 0 });
  const line = h("p", { id: "job-progress-line" });
  const events = h("ul", { id: "job-events", class: "events" });
  const notice = h("div");
  const links = h("p");
  const cancel = h("button", { type: "button", id: "cancel-job" }, t("train.cancel"));
  const element = h("section", { class: "card job", id: "job", dataset: { job: id } }, h("h3", {}, t("train.job", { id })), h("p", {}, state), bar, line, cancel, notice, links, events);
  const controller = new AbortController();
  window.addEventListener("hashchange", () => controller.abort(), { once: true });
  let sequence = 0;

  const show = (job) => {
    const name = stateName(job.state);
    element.dataset.state = name;
    state.textContent = t(`state.${name}`) + (job.reason ? ` — ${job.reason}` : "");
    cancel.hidden = ENDED.has(name);
    if (name === "succeeded")
      replace(links, h("a", { href: `#/reports/${encodeURIComponent(id)}`, id: "job-report" }, t("train.openReport", { version: job.version })), " · ",
        h("a", { href: `#/models/${encodeURIComponent(job.model)}` }, t("nav.models")));
  };
  const onEvent = ({ event, jobsAhead }) => {
    if (!event) {
      line.textContent = t("train.queued", { ahead: jobsAhead });
      return;
    }
    sequence = Number(event.sequence);
    const name = stateName(event.state);
    element.dataset.state = name;
    state.textContent = t(`state.${name}`);
    const total = Number(event.progress?.documentsTotal || 0);
    bar.value = ENDED.has(name) && name === "succeeded" ? 1 : total ? Number(event.progress.documentsDone) / total : bar.value;
    line.textContent = progressLine(event.progress);
    events.prepend(h("li", {}, `${new Date(event.at).toLocaleTimeString()}  ${t(`state.${name}`)}  ${progressLine(event.progress)}  ${event.message || ""}`));
  };
  const follow = async () => {
    replace(notice);
    try {
      show((await call(path`/v1/jobs/${id}`)).job);
      await stream(`${path`/v1/jobs/${id}:watch`}?after_sequence=${sequence}`, onEvent, { signal: controller.signal });
      show((await call(path`/v1/jobs/${id}`)).job);
      onEnded();
    } catch (error) {
      if (error.name !== "AbortError") replace(notice, errorBox(error, { retry: follow }));
    }
  };
  cancel.addEventListener("click", async () => {
    try {
      show((await call(path`/v1/jobs/${id}:cancel`, { method: "POST", body: { reason: t("train.cancelledFromConsole") } })).job);
    } catch (error) {
      replace(notice, errorBox(error, { needs: "trainer" }));
    }
  });
  follow();
  return element;
}

function recentJobs() {
  const list = h("div", { id: "recent-jobs" });
  const rows = (page) => h("ul", { class: "jobs" }, page.map((job) => h("li", { dataset: { job: job.id } }, h("a", { href: `#/train/${encodeURIComponent(job.id)}` }, job.id),
    ` ${job.model} · ${t(`state.${stateName(job.state)}`)}`, job.version ? ` · ${job.version}` : "", job.tune ? ` · ${t("train.tuned")}` : "")));
  const refresh = () =>
    call(`/v1/jobs?limit=${RECENT_JOBS}`)
      .then(({ jobs }) => replace(list, jobs.length ? paged(jobs, rows, { size: JOBS_PER_PAGE }) : h("p", {}, t("train.noJobs"))))
      .catch((error) => replace(list, errorBox(error, { retry: refresh })));
  refresh();
  return { element: h("section", { class: "card" }, h("h3", {}, t("train.recent")), list), refresh };
}

export function render(main, [job]) {
  const jobs = jobForm();
  const recent = recentJobs();
  replace(main, h("h2", {}, t("nav.train")), job ? watchJob(job, recent.refresh) : null, uploadForm((id) => jobs.loadDatasets(id)), jobs.element, recent.element);
}
