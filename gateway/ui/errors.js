// An API error as a person needs it: what happened in words, the gateway's own message,
// and what to do next (sign in, ask for a role, retry).

import { claims } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";

// needs: the role the action takes, when the page knows it (a refusal then says so).
export function errorBox(error, { needs = "", retry = null } = {}) {
  const role = t(`role.${claims()?.role || "none"}`);
  let summary;
  if (error.status === 0) summary = t("error.unreachable");
  else if (error.status === 401) summary = t("error.signIn");
  else if (error.status === 403 && /RBAC/.test(error.message))
    summary = needs ? t("error.refusedNeeds", { role, needs: t(`role.${needs}`) }) : t("error.refused", { role });
  else if (error.status === 403) summary = t("error.denied");
  else if (error.status === 429) summary = t("error.rateLimited");
  else if (error.status === 503 || error.code === 14) summary = t("error.unavailable");
  else summary = t("error.failed");
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, summary),
    h("p", { class: "gateway-message" }, error.message),
    retry ? h("button", { type: "button", onclick: retry }, t("action.retry")) : null,
  );
}
