// The live configuration on the services page: the active mesh scenario, the history of
// every change (who, when, before, after, why) and, for admins, the gateway's deny list
// with add and remove. Loaded once and after each change, not with the page's refresh, so
// a form being filled in is never redrawn under the typist.

import { call, mayAct, path } from "./api.js";
import { h, paged, replace } from "./dom.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";

const SCENARIOS = "mesh.scenarios";
const HISTORY_LIMIT = 200; // the newest changes; the table pages through them

const when = (time) => (time ? new Date(time).toLocaleString() : "–");

function historyTable(changes) {
  return h("table", { class: "config-history" },
    h("thead", {}, h("tr", {}, ["#", t("config.when"), t("config.who"), t("config.key"), t("config.before"), t("config.after"), t("config.reason")].map((c) => h("th", {}, c)))),
    h("tbody", {}, changes.map((c) => h("tr", { dataset: { sequence: c.sequence, key: c.key } },
      h("td", { class: "number" }, c.sequence), h("td", {}, when(c.time)), h("td", {}, c.who), h("td", {}, c.key),
      h("td", { class: "before" }, c.before || "–"), h("td", { class: "after" }, c.after || "–"), h("td", {}, c.reason || "")))));
}

// Sends a change; on success the whole section is loaded again, on refusal the form keeps
// what was typed and says why.
function submitting(form, notice, request, reload) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await request();
      await reload();
    } catch (error) {
      replace(notice, errorBox(error, { needs: "admin" }));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

// The scenarios the mesh offers (GetConfig's choices), those in force ticked.
function scenarioCard(settings, reload) {
  const setting = settings.find((s) => s.key === SCENARIOS) || { value: "", choices: [] };
  const active = setting.value || "";
  const inForce = new Set(active.split(",").filter(Boolean));
  const choices = h("fieldset", { id: "scenarios", class: "choices" }, h("legend", {}, t("config.scenarios")),
    setting.choices.map((name) => h("label", { class: "inline" }, h("input", { type: "checkbox", value: name, checked: inForce.has(name), class: "scenario" }), name)));
  const reason = h("input", { id: "scenarios-reason", placeholder: t("config.reasonPlaceholder") });
  const notice = h("div", { class: "notice" });
  const form = h("form", { id: "scenario-form" }, choices,
    h("div", { class: "row" }, h("label", {}, t("config.reason"), reason), h("button", { type: "submit", class: "primary", id: "set-scenarios" }, t("config.apply"))));
  const chosen = () => [...choices.querySelectorAll("input:checked")].map((input) => input.value).join(",");
  return h("section", { class: "card", id: "scenario" },
    h("h3", {}, t("config.scenarioTitle")),
    h("p", {}, h("strong", { id: "active-scenario", dataset: { value: active } }, active || t("config.noScenario"))),
    mayAct("admin")
      ? submitting(form, notice, () => call("/v1/config:set", { method: "POST", body: { key: SCENARIOS, value: chosen(), reason: reason.value } }), reload)
      : null,
    notice);
}

function denyCard(rules, reload) {
  const notice = h("div", { class: "notice" });
  const remove = async (rule) => {
    try {
      await call(`${path`/v1/config/deny/${rule.id}`}?reason=${encodeURIComponent(t("config.removedFromConsole"))}`, { method: "DELETE" });
      await reload();
    } catch (error) {
      replace(notice, errorBox(error, { needs: "admin" }));
    }
  };
  const kind = h("select", { id: "deny-kind" }, h("option", { value: "subject" }, t("config.subject")), h("option", { value: "address" }, t("config.address")));
  const caller = h("input", { id: "deny-caller", required: true, placeholder: t("config.callerPlaceholder") });
  const reason = h("input", { id: "deny-reason", required: true, placeholder: t("config.denyReasonPlaceholder") });
  const form = h("form", { id: "deny-form", class: "row" },
    h("label", {}, t("config.callerKind"), kind), h("label", {}, t("config.caller"), caller), h("label", {}, t("config.reason"), reason),
    h("button", { type: "submit", class: "primary", id: "add-deny" }, t("config.deny")));
  const rows = (page) => h("table", { class: "deny-rules" },
    h("thead", {}, h("tr", {}, ["#", t("config.caller"), t("config.reason"), t("config.since"), t("config.by"), ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, page.map((rule) => h("tr", { dataset: { rule: rule.id, caller: rule.subject || rule.address } },
      h("td", { class: "number" }, rule.id), h("td", {}, rule.subject ? `${t("config.subject")} ${rule.subject}` : `${t("config.address")} ${rule.address}`),
      h("td", {}, rule.reason), h("td", {}, when(rule.created)), h("td", {}, rule.createdBy),
      h("td", {}, h("button", { type: "button", class: "remove-deny", onclick: () => remove(rule) }, t("config.allow")))))));
  return h("section", { class: "card", id: "deny" },
    h("h3", {}, t("config.denyTitle")),
    rules.length ? paged(rules, rows) : h("p", {}, t("config.noDeny")),
    submitting(form, notice, () => call("/v1/config/deny", { method: "POST", body: { [kind.value]: caller.value.trim(), reason: reason.value } }), reload),
    notice);
}

export function configSection() {
  const element = h("div", { id: "config" });
  const admin = mayAct("admin");
  const load = async () => {
    try {
      const [{ settings }, { changes }, deny] = await Promise.all([
        call("/v1/config"),
        call(`/v1/config/history?limit=${HISTORY_LIMIT}`),
        admin ? call("/v1/config/deny") : null,
      ]);
      replace(element,
        h("div", { class: "columns" },
          scenarioCard(settings, load),
          admin ? denyCard(deny.rules, load) : h("section", { class: "card" }, h("h3", {}, t("config.denyTitle")), h("p", { class: "hint", id: "deny-admin-only" }, t("config.denyAdminOnly")))),
        h("section", { class: "card", id: "config-history" }, h("h3", {}, t("config.history")),
          changes.length ? paged(changes, historyTable) : h("p", {}, t("config.noHistory"))));
    } catch (error) {
      replace(element, errorBox(error, { retry: load }));
    }
  };
  load();
  return element;
}
