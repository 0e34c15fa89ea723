import { test } from "node:test";
import assert from "node:assert/strict";
import { figureSize, mergeBands, shiftY } from "../src/figure.js";

test("bands merge when they overlap or touch, sorted", () => {
  assert.deepEqual(mergeBands([[50, 60], [10, 20], [18, 30], [30, 35], [70, 70]]), [[10, 35], [50, 60]]);
});

test("y below removed bands moves up by their heights; inside a band it lands on the band's top", () => {
  const bands = [[10, 35], [50, 60]]; // 25 + 10 px removed
  assert.equal(shiftY(bands, 5), 5);
  assert.equal(shiftY(bands, 20), 10);
  assert.equal(shiftY(bands, 40), 15);
  assert.equal(shiftY(bands, 100), 65);
});

test("figure size: twice the panel less the bands", () => {
  assert.deepEqual(figureSize(300.5, 400, [[10, 35]], 2), { width: 601, height: 750 });
  assert.deepEqual(figureSize(300, 400, [], 1), { width: 300, height: 400 });
});
