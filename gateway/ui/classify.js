// Classify: a text (or a file of lines) with any model, version or alias; the labels with
// their scores, the tokens as segmented, and the words that pushed the decision marked in
// the text (the explain option).

import { call } from "./api.js";
import { formatNumber, h, paged, replace } from "./dom.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";
import { modelChooser } from "./models.js";
import { bars } from "./svg.js";

// How the preprocessor spells its terms (fenlei.preprocessor.core): a character n-gram
// starts with CHAR_MARK, a word n-gram joins its words with a space, a tag starts with
// TAG_MARK (no text of its own to mark).
const CHAR_MARK = "§";
const TAG_MARK = "¶";
const WORD_JOINER = " ";
const MAX_LINES = 1000;

export function surface(feature) {
  if (feature.includes(TAG_MARK)) return "";
  if (feature.startsWith(CHAR_MARK)) return feature.slice(CHAR_MARK.length);
  return feature.split(WORD_JOINER).join("");
}

// As the preprocessor folds width and case, one character at a time.
function fold(character) {
  const folded = character.normalize("NFKC").toLowerCase();
  return Array.from(folded).length === 1 ? folded : character;
}

// The text cut into runs, each with the features that pushed the decision (weight > 0)
// and whose text covers it.
export function highlight(text, explanation) {
  const characters = Array.from(text);
  const folded = characters.map(fold);
  const covering = characters.map(() => []);
  for (const { feature, weight } of explanation) {
    const word = Array.from(surface(feature)).map(fold);
    if (weight <= 0 || word.length === 0) continue;
    for (let start = 0; start + word.length <= folded.length; start++) {
      if (word.every((character, i) => folded[start + i] === character)) {
        for (let i = 0; i < word.length; i++) if (!covering[start + i].includes(feature)) covering[start + i].push(feature);
      }
    }
  }
  const runs = [];
  characters.forEach((character, i) => {
    const key = covering[i].join("\u0000");
    const last = runs[runs.length - 1];
    if (last && last.key === key) last.text += character;
    else runs.push({ key, text: character, features: covering[i] });
  });
  return runs;
}

function markedText(text, explanation) {
  const weights = Object.fromEntries(explanation.map((c) => [c.feature, c.weight]));
  return h(
    "p",
    { class: "marked-text" },
    highlight(text, explanation).map((run) =>
      run.features.length
        ? h("mark", { dataset: { features: JSON.stringify(run.features) }, title: run.features.map((f) => `${f}  +${formatNumber(weights[f])}`).join("\n") }, run.text)
        : run.text,
    ),
  );
}

async function classifyOne(choice, text, options, out) {
  const answer = await call("/v1/classify", {
    method: "POST",
    body: { text, model: choice.model, version: choice.version, topK: options.topK, explain: options.explain },
  });
  // The tokens as the version that answered segments them (its own segmenter options).
  const segmented = await call("/v1/segmenter:segment", {
    method: "POST",
    body: { documents: [{ id: "0", text }], model: { name: answer.model, version: answer.version } },
  });
  const tokens = segmented.documents[0]?.tokens || [];
  const scores = answer.labels.map((l) => l.score);
  const probabilities = scores.every((score) => score >= 0 && score <= 1);
  replace(
    out,
    h("p", { class: "answered" }, t("classify.answered", { model: answer.model, version: answer.version, request: answer.requestId }), answer.arm ? ` · ${t("classify.arm", { experiment: answer.experiment, arm: answer.arm })}` : ""),
    h("section", { class: "card" }, h("h3", {}, t("classify.labels")), probabilities ? null : h("p", { class: "hint" }, t("classify.decisionValues")),
      bars(answer.labels.map((l) => ({ label: l.label, value: l.score })), { max: probabilities ? 1 : Math.max(...scores.map(Math.abs), 1e-9), className: "labels" })),
    h("section", { class: "card" }, h("h3", {}, t("classify.why", { label: answer.labels[0]?.label || "" })), markedText(text, answer.explanation),
      h("table", { class: "explanation" },
        h("thead", {}, h("tr", {}, h("th", {}, t("classify.feature")), h("th", {}, t("classify.weight")))),
        h("tbody", {}, answer.explanation.map((c) => h("tr", { class: c.weight > 0 ? "for" : "against" }, h("td", {}, c.feature), h("td", { class: "number" }, formatNumber(c.weight))))))),
    h("section", { class: "card" }, h("h3", {}, t("classify.tokens", { count: tokens.length })), h("p", { class: "tokens" }, tokens.map((token) => h("span", { class: "token" }, token)))),
  );
}

async function classifyLines(choice, file, options, out) {
  const lines = (await file.text()).split(/\r?\n/).filter((line) => line.trim());
  if (lines.length > MAX_LINES) {
    replace(out, h("div", { class: "error", role: "alert" }, t("classify.tooManyLines", { lines: lines.length, max: MAX_LINES })));
    return;
  }
  const answer = await call("/v1/classify:batch", {
    method: "POST",
    body: { documents: lines.map((text, i) => ({ id: String(i + 1), text })), model: choice.model, version: choice.version, topK: options.topK },
  });
  replace(
    out,
    h("p", { class: "answered" }, t("classify.answered", { model: answer.model, version: answer.version, request: answer.requestId })),
    paged(answer.predictions, (page) => h("table", { class: "lines" },
      h("thead", {}, h("tr", {}, h("th", {}, t("classify.line")), h("th", {}, t("classify.text")), h("th", {}, t("classify.labels")))),
      h("tbody", {}, page.map((p) => h("tr", {}, h("td", { class: "number" }, p.id), h("td", {}, lines[Number(p.id) - 1]),
        h("td", {}, p.labels.map((l) => `${l.label} ${formatNumber(l.score)}`).join(" · "))))))),
  );
}

export function render(main) {
  const out = h("div", { id: "classify-result" });
  const text = h("textarea", { id: "text", rows: 4, placeholder: t("classify.placeholder") });
  const file = h("input", { id: "lines", type: "file", accept: ".txt,.tsv,text/plain" });
  const topK = h("input", { id: "top-k", type: "number", min: 0, value: 3 });
  const explain = h("input", { id: "explain", type: "number", min: 0, value: 10 });
  const chooser = modelChooser();
  const button = h("button", { type: "submit", class: "primary", id: "classify" }, t("classify.run"));
  const form = h(
    "form",
    { class: "card" },
    h("h2", {}, t("nav.classify")),
    chooser.element,
    h("label", { for: "text" }, t("classify.text")),
    text,
    h("div", { class: "row" },
      h("label", {}, t("classify.topK"), topK), h("label", {}, t("classify.explain"), explain),
      h("label", {}, t("classify.file"), file)),
    button,
  );
  const run = async () => {
    const options = { topK: Number(topK.value), explain: Number(explain.value) };
    button.disabled = true;
    replace(out, h("p", { class: "busy" }, t("busy")));
    try {
      if (file.files.length) await classifyLines(chooser.value(), file.files[0], options, out);
      else await classifyOne(chooser.value(), text.value, options, out);
    } catch (error) {
      replace(out, errorBox(error, { retry: run }));
    } finally {
      button.disabled = false;
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  replace(main, form, out);
}
