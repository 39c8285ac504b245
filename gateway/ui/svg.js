// Charts drawn as SVG by our own code: horizontal bars and a heatmap.

import { formatNumber, s } from "./dom.js";

const ROW = 22;
const LABEL_WIDTH = 140;

// items: [{label, value}] with values in [0, max]; each bar names its value.
export function bars(items, { max = 1, width = 420, digits = 3, className = "" } = {}) {
  const plot = width - LABEL_WIDTH - 60;
  const height = items.length * ROW + 4;
  return s(
    "svg",
    { class: `bars ${className}`, width, height, viewBox: `0 0 ${width} ${height}`, role: "img" },
    items.map((item, i) => {
      const y = i * ROW + 2;
      const length = max > 0 ? Math.max(0, (item.value / max) * plot) : 0;
      return s(
        "g",
        { class: "bar", dataset: { label: item.label, value: String(item.value) } },
        s("text", { x: LABEL_WIDTH - 6, y: y + 15, "text-anchor": "end" }, item.label),
        s("rect", { x: LABEL_WIDTH, y: y + 3, width: length, height: ROW - 6, rx: 2 }),
        s("text", { x: LABEL_WIDTH + length + 4, y: y + 15, class: "value" }, formatNumber(item.value, digits)),
      );
    }),
  );
}

// A square per matrix[row][column], darker the larger its share of its row; onCell(row,
// column) when a cell is clicked or chosen with the keyboard.
export function heatmap(labels, matrix, { onCell = null, cell = 48 } = {}) {
  const [left, top, right] = [LABEL_WIDTH, 90, 100]; // room for the labels: rows on the left, columns slanted above
  const width = left + labels.length * cell + right;
  const height = top + labels.length * cell + 4;
  const svg = s("svg", { class: "heatmap", width, height, viewBox: `0 0 ${width} ${height}`, role: "grid" });
  labels.forEach((label, i) => {
    svg.append(s("text", { x: left - 6, y: top + i * cell + cell / 2 + 5, "text-anchor": "end", class: "row-label" }, label));
    const x = left + i * cell + cell / 2;
    svg.append(s("text", { x, y: top - 8, transform: `rotate(-40 ${x} ${top - 8})`, class: "column-label" }, label));
  });
  matrix.forEach((counts, row) => {
    const total = counts.reduce((sum, count) => sum + count, 0) || 1;
    counts.forEach((count, column) => {
      const share = count / total;
      const x = left + column * cell;
      const y = top + row * cell;
      const open = () => onCell && onCell(row, column);
      const group = s(
        "g",
        {
          class: `cell${row === column ? " diagonal" : ""}`,
          dataset: { row: String(row), column: String(column), count: String(count) },
          tabindex: onCell ? 0 : null,
          role: "gridcell",
          onclick: open,
          onkeydown: (event) => (event.key === "Enter" || event.key === " ") && open(),
        },
        s("rect", { x, y, width: cell - 2, height: cell - 2, "fill-opacity": (0.08 + 0.92 * share).toFixed(3) }),
        s("text", { x: x + cell / 2 - 1, y: y + cell / 2 + 4, "text-anchor": "middle", class: share > 0.55 ? "light" : "" }, String(count)),
      );
      group.append(s("title", {}, `${labels[row]} → ${labels[column]}: ${count}`));
      svg.append(group);
    });
  });
  return svg;
}
