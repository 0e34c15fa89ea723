import { test } from "node:test";
import assert from "node:assert/strict";
import { plotPoints } from "../src/plot.js";

test("points map the range onto the box, y up, clipped at the edges", () => {
  const range = { x0: 0, x1: 1, y0: 0, y1: 1 };
  assert.deepEqual(plotPoints([0, 0.5, 1], [0, 0.5, 1], range, 100, 50, 0), [[0, 50], [50, 25], [100, 0]]);
  assert.deepEqual(plotPoints([2, -1], [-3, 9], range, 100, 50, 0), [[100, 50], [0, 0]]); // clipped
  assert.deepEqual(plotPoints([0, NaN, 1], [1, 1, Infinity], range, 10, 10, 0), [[0, 0]]); // non-finite dropped
});

test("a stage axis puts point i under the centre of column i", () => {
  const columns = 4, cell = 66;
  const range = { x0: -0.5, x1: columns - 0.5, y0: -1, y1: 1 };
  const points = plotPoints([0, 1, 2, 3], [1, 0, -1, 0], range, columns * cell, 120, 0);
  assert.deepEqual(points.map(([x]) => x), [33, 99, 165, 231]);
  assert.deepEqual(points.map(([, y]) => y), [0, 60, 120, 60]);
});

test("the strip's columns shrink to fit the panel, within bounds", async () => {
  globalThis.document ??= undefined; // (the module only touches the DOM when mounted)
  const { cellWidth } = await import("../src/panels/trust.js");
  assert.equal(cellWidth(2000, 13), 66); // room to spare: the largest column
  assert.equal(cellWidth(150 + 13 * 50, 13), 50); // exactly 50 each
  assert.equal(cellWidth(300, 13), 24); // too narrow: the smallest, and the strip scrolls
});
