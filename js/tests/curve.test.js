import { test } from "node:test";
import assert from "node:assert/strict";
import { curvePoints, rgbToRgba } from "../src/curve.js";

test("the objective curve spans the box, larger values higher", () => {
  const points = curvePoints([0, 1, 2], 3, 100, 50, 0);
  assert.deepEqual(points, [[0, 50], [50, 25], [100, 0]]);
  assert.deepEqual(curvePoints([], 10, 100, 50), []);
  assert.ok(Math.abs(curvePoints([5, 5], 4, 100, 50, 0)[1][0] - 100 / 3) < 1e-9); // x by step of the whole run
  assert.deepEqual(curvePoints([NaN], 1, 10, 10), []);
});

test("frames become opaque RGBA", () => {
  assert.deepEqual(Array.from(rgbToRgba(new Uint8Array([1, 2, 3, 4, 5, 6]), 1, 2)), [1, 2, 3, 255, 4, 5, 6, 255]);
});
