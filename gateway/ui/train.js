// Datasets and training: upload a dataset (its problems by line when it is refused), start
// a training job, watch it live, cancel it.

import { call, path, stream } from "./api.js";
import { formatNumber, h, replace } from "./dom.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";

// Bytes per message of the upload stream (base64 makes each a third larger).
const CHUNK_BYTES = 192 * 1024;
const ALGORITHMS = ["ALGORITHM_UNSPECIFIED", "ALGORITHM_LINEAR_SVM", "ALGORITHM_LOGISTIC_REGRESSION", "ALGORITHM_COMPLEMENT_NB", "ALGORITHM_MULTINOMIAL_NB", "ALGORITHM_SGD"];
const ENDED = new Set(["succeeded", "failed", "cancelled"]);
const RECENT_JOBS = 10;

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

async function upload(file, name) {
  const messages = [];
  for (let offset = 0; offset === 0 || offset < file.size; offset += CHUNK_BYTES) {
    messages.push({ chunk: await base64(file.slice(offset, offset + CHUNK_BYTES)) });
  }
  Object.assign(messages[0], { name: name || file.name, fileName: file.name, sizeBytes: String(file.size) });
  return call("/v1/datasets", { method: "POST", body: messages });
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
  const result = h("div", { id: "upload-result" });
  const button = h("button", { type: "submit", class: "primary", id: "upload" }, t("train.upload"));
  const form = h("form", { class: "card" }, h("h3", {}, t("train.uploadTitle")), h("p", { class: "hint" }, t("train.formats")),
    h("div", { class: "row" }, h("label", {}, t("train.file"), file), h("label", {}, t("train.datasetName"), name)), button, result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    replace(result, h("p", { class: "busy" }, t("busy")));
    try {
      const answer = await upload(file.files[0], name.value);
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

function jobForm() {
  const model = h("input", { id: "job-model", required: true, placeholder: "reviews" });
  const dataset = h("select", { id: "job-dataset", required: true });
  const algorithm = h("select", { id: "job-algorithm" }, ALGORITHMS.map((a) => h("option", { value: a }, t(`algorithm.${a}`))));
  const testFraction = h("input", { id: "job-test-fraction", type: "number", min: 0.05, max: 0.5, step: 0.05, value: 0.2 });
  const folds = h("input", { id: "job-folds", type: "number", min: 0, max: 10, value: 0 });
  const tune = h("input", { id: "job-tune", type: "checkbox" });
  const result = h("div", { id: "job-result" });
  const button = h("button", { type: "submit", class: "primary", id: "start-job" }, t("train.start"));
  const form = h("form", { class: "card" }, h("h3", {}, t("train.jobTitle")),
    h("div", { class: "row" }, h("label", {}, t("models.model"), model), h("label", {}, t("train.dataset"), dataset)),
    h("div", { class: "row" }, h("label", {}, t("train.algorithm"), algorithm), h("label", {}, t("train.testFraction"), testFraction),
      h("label", {}, t("train.folds"), folds), h("label", { class: "inline" }, tune, t("train.tune"))),
    button, result);
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
    button.disabled = true;
    const evaluation = Number(folds.value) > 1 ? { folds: Number(folds.value) } : { testFraction: Number(testFraction.value) };
    try {
      const { job } = await call("/v1/jobs", {
        method: "POST",
        body: { model: model.value, dataset: dataset.value, evaluation, tune: tune.checked, config: { classifier: { algorithm: algorithm.value } } },
      });
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
  const list = h("ul", { class: "jobs" });
  const refresh = () =>
    call(`/v1/jobs?limit=${RECENT_JOBS}`)
      .then(({ jobs }) => replace(list, jobs.map((job) => h("li", {}, h("a", { href: `#/train/${encodeURIComponent(job.id)}` }, job.id), ` ${job.model} · ${t(`state.${stateName(job.state)}`)}`, job.version ? ` · ${job.version}` : ""))))
      .catch((error) => replace(list, errorBox(error)));
  refresh();
  return { element: h("section", { class: "card" }, h("h3", {}, t("train.recent")), list), refresh };
}

export function render(main, [job]) {
  const jobs = jobForm();
  const recent = recentJobs();
  replace(main, h("h2", {}, t("nav.train")), job ? watchJob(job, recent.refresh) : null, uploadForm((id) => jobs.loadDatasets(id)), jobs.element, recent.element);
}
