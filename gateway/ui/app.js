// The console's shell: sign-in, the language switch, the navigation and the page router
// (#/page/arguments...; the fragment never reaches a server).

import { claims, setToken, takeTokenFromFragment, token } from "./api.js";
import { h, replace } from "./dom.js";
import { language, setLanguage, t } from "./i18n.js";
import * as classify from "./classify.js";
import * as models from "./models.js";
import * as reports from "./reports.js";
import * as services from "./services.js";
import * as train from "./train.js";

const PAGES = { classify, train, reports, models, services };
const DEFAULT_PAGE = "classify";

function signIn(main) {
  const box = h("textarea", { id: "token", rows: 4, placeholder: "eyJ..." });
  const form = h(
    "form",
    { class: "card sign-in" },
    h("h2", {}, t("signIn.title")),
    h("p", {}, t("signIn.help")),
    h("pre", {}, "fenlei ui --role admin"),
    h("label", { for: "token" }, t("signIn.paste")),
    box,
    h("button", { type: "submit", class: "primary" }, t("signIn.submit")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(box.value);
    render();
  });
  replace(main, form);
}

function header() {
  const current = location.hash.slice(2).split("/")[0] || DEFAULT_PAGE;
  replace(
    document.getElementById("nav"),
    Object.keys(PAGES).map((name) => h("a", { href: `#/${name}`, class: name === current ? "current" : null }, t(`nav.${name}`))),
  );
  const held = claims();
  document.getElementById("who").textContent = held ? t("session.who", { subject: held.subject, role: t(`role.${held.role}`) }) : "";
  const out = document.getElementById("sign-out");
  out.textContent = t("session.signOut");
  out.hidden = !token();
  document.documentElement.lang = language() === "zh" ? "zh-CN" : "en";
  document.getElementById("language").value = language();
}

// What was typed into the page's fields (a file choice cannot be set again by a page), each
// found by its id, else by its class and its place among the fields of that class; the page
// draws the same fields in either language.
function fieldsOf(main) {
  const seen = {};
  const typed = [];
  for (const field of main.querySelectorAll("input, textarea, select")) {
    const selector = field.id ? `#${CSS.escape(field.id)}` : [...field.classList].map((name) => `.${CSS.escape(name)}`).join("");
    const index = (seen[selector] = (seen[selector] ?? -1) + 1);
    if (selector && field.type !== "file") typed.push({ selector, index, value: field.value, checked: field.checked });
  }
  return typed;
}

// Gives the fields drawn again what was typed; a field drawn later (after an answer of the
// API) or a choice whose options arrive later is filled as soon as it can take the value.
let refilling = null; // the observer of the last language switch, stopped by the next

function refill(main, typed) {
  refilling?.disconnect();
  let pending = typed;
  const fill = () => {
    pending = pending.filter(({ selector, index, value, checked }) => {
      const field = main.querySelectorAll(selector)[index];
      if (!field) return true;
      if (field.type === "checkbox" || field.type === "radio") field.checked = checked;
      else if (field.tagName === "SELECT" && ![...field.options].some((option) => option.value === value)) return true;
      else if (field.value !== value) {
        field.value = value;
        field.dispatchEvent(new Event("change")); // a choice others depend on (a model's versions) updates them
      }
      return false;
    });
    if (!pending.length) observer.disconnect();
  };
  const observer = new MutationObserver(fill);
  refilling = observer;
  observer.observe(main, { childList: true, subtree: true });
  window.addEventListener("hashchange", () => observer.disconnect(), { once: true });
  fill();
}

function render() {
  header();
  const main = document.getElementById("main");
  const held = claims();
  if (!held || (held.expires && held.expires < new Date())) return signIn(main);
  const [name, ...args] = location.hash.slice(2).split("/").map(decodeURIComponent);
  const page = PAGES[name] || PAGES[DEFAULT_PAGE];
  replace(main);
  page.render(main, args);
}

takeTokenFromFragment();
document.getElementById("sign-out").addEventListener("click", () => {
  setToken("");
  render();
});
document.getElementById("language").addEventListener("change", (event) => {
  const typed = fieldsOf(document.getElementById("main"));
  setLanguage(event.target.value);
  render();
  refill(document.getElementById("main"), typed);
});
window.addEventListener("hashchange", render);
render();
