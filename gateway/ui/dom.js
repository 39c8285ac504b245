// Building the page: elements from plain values, never from HTML strings, so text from the
// API (a dataset's lines, a model's labels) is always shown as text.

import { t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const PAGE_SIZE = 20;

function fill(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// h("button", {class: "primary", onclick: run}, "Run")
export function h(tag, attributes, ...children) {
  return fill(document.createElement(tag), attributes, children);
}

// s("rect", {x: 0, y: 0, width: 10, height: 10})
export function s(tag, attributes, ...children) {
  return fill(document.createElementNS(SVG, tag), attributes, children);
}

export function replace(element, ...children) {
  element.replaceChildren();
  return fill(element, {}, children);
}

export function formatNumber(value, digits = 3) {
  return Number(value).toFixed(digits);
}

// A long list a page at a time: rows(items of the page) draws them, under them the page's
// number and buttons to the pages before and after. A list redrawn as it refreshes passes the
// same state each time, so the reader stays on the page they turned to.
export function paged(items, rows, { size = PAGE_SIZE, state = { page: 0 } } = {}) {
  const element = h("div", { class: "paged" });
  const pages = Math.max(1, Math.ceil(items.length / size));
  const show = () => {
    state.page = Math.min(state.page, pages - 1);
    const go = (step) => () => {
      state.page += step;
      show();
    };
    const page = state.page;
    replace(element, rows(items.slice(page * size, (page + 1) * size)),
      pages > 1 ? h("div", { class: "pager", dataset: { page: String(page + 1), pages: String(pages) } },
        h("button", { type: "button", class: "previous", disabled: page === 0, onclick: go(-1) }, t("pager.previous")),
        h("span", {}, t("pager.page", { page: page + 1, pages })),
        h("button", { type: "button", class: "next", disabled: page === pages - 1, onclick: go(1) }, t("pager.next"))) : null);
  };
  show();
  return element;
}
