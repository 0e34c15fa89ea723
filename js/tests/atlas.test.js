import { test } from "node:test";
import assert from "node:assert/strict";
import { cellAt } from "../src/panels/atlas.js";

test("the atlas cell under a pixel is a non-empty cell with its count", () => {
  const info = { cell: 32, cells: [[0, 1, 5, null], [2, 0, 3, 0.5]] };
  assert.deepEqual(cellAt(info, 40, 10), [0, 1, 5]);
  assert.deepEqual(cellAt(info, 5, 70), [2, 0, 3]);
  assert.equal(cellAt(info, 5, 5), null); // an empty cell
  assert.equal(cellAt({}, 5, 5), null);
});
