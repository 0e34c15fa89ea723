import { test } from "node:test";
import assert from "node:assert/strict";
import { progressFraction, progressText } from "../src/progress.js";
import { greyPending, occlusionCaption, occlusionStage } from "../src/panels/occlusion.js";
import { vizState } from "../src/panels/visualize.js";

test("fraction and text of a running computation, unknown totals are indeterminate", () => {
  assert.equal(progressFraction({ state: "running", done: 24, total: 81 }), 24 / 81);
  assert.equal(progressFraction({ state: "running", done: 0, total: 0 }), null);
  assert.equal(progressFraction({ done: 90, total: 81 }), 1);
  assert.equal(progressText({ state: "running", done: 24, total: 81, unit: "windows" }), "24/81 windows (30%)");
  assert.equal(progressText({ state: "running", done: 0, total: 0 }), "computing…");
  assert.equal(progressText({ state: "cancelled", message: "cancelled after 15 of 49 windows" }), "cancelled after 15 of 49 windows");
  assert.equal(progressText({ state: "error", message: "RuntimeError: boom" }), "error: RuntimeError: boom");
  assert.equal(progressText({ state: "done", done: 81, total: 81 }), "");
});

test("pending pixels are greyed, the others untouched", () => {
  // 2 x 2 image drawn from a 1 x 2 mask: the right column is pending
  const rgba = new Uint8ClampedArray([255, 0, 0, 255, 0, 0, 255, 255, 0, 255, 0, 255, 10, 20, 30, 255]);
  greyPending(rgba, 2, 2, new Uint8Array([0, 1]), 1, 2);
  assert.deepEqual(Array.from(rgba.slice(0, 4)), [255, 0, 0, 255]);
  assert.deepEqual(Array.from(rgba.slice(8, 12)), [0, 255, 0, 255]);
  const blue = Math.round(150 + 0.35 * (0.114 * 255)), dark = Math.round(150 + 0.35 * (0.299 * 10 + 0.587 * 20 + 0.114 * 30));
  assert.deepEqual(Array.from(rgba.slice(4, 8)), [blue, blue, blue, 255]);
  assert.deepEqual(Array.from(rgba.slice(12, 16)), [dark, dark, dark, 255]);
});

test("the caption says how much of the map is there", () => {
  const info = { target: "class tabby", window: 48, stride: 24, fill: "mean", extent: 0.5, done: 20, total: 81 };
  assert.match(occlusionCaption(info, { state: "running" }), /^computing: 20 of 81 windows; grey = not computed yet/);
  assert.match(occlusionCaption(info, { state: "cancelled" }), /^cancelled, partial map: 20 of 81 windows/);
  assert.match(occlusionCaption({ ...info, done: 81 }, { state: "done" }), /red = the score falls, largest 0\.500$/);
  assert.equal(occlusionCaption({}, {}), "");
});

test("coarse to fine: the caption and the stage say which map is shown", () => {
  const info = { target: "class tabby", window: 48, stride: 24, fill: "mean", extent: 0.5, done: 25, total: 81, mode: "exact" };
  assert.equal(occlusionStage({ ...info, stage: "first" }, null), "first");
  assert.match(occlusionCaption({ ...info, stage: "first" }, { state: "running" }), /^coarse, refining: 25 of 81 windows \(every pixel/);
  assert.match(occlusionCaption({ ...info, stage: "refining", done: 50 }, { state: "cancelled" }), /^cancelled, coarse map/);
  assert.match(occlusionCaption({ ...info, stage: "exact", done: 81 }, {}), /^exact: drop of class tabby when a 48px square/);
  assert.match(occlusionCaption({ ...info, stage: "exact", done: 81, cached: true }, {}), /^exact \(computed before\): /);
  assert.match(occlusionCaption({ ...info, stage: "approximate", mode: "fast" }, {}), /^approximate: .*fast: approximate/);
  // an info without a stage (an older kernel) is read from done / total
  assert.equal(occlusionStage({ ...info, done: 20 }, null), "partial");
  assert.equal(occlusionStage({ ...info, done: 81 }, null), "exact");
  assert.equal(occlusionStage({}, null), "");
});

test("a visualisation run's state is the runner's progress entry of the visualize job", () => {
  const model = { get: (k) => (k === "progress" ? { occlusion: { state: "done" }, visualize: { state: "running", done: 8, total: 64, unit: "steps" } } : undefined) };
  assert.deepEqual(vizState(model), { state: "running", done: 8, total: 64, unit: "steps" });
  assert.equal(progressText(vizState(model)), "8/64 steps (13%)");
  assert.deepEqual(vizState({ get: () => undefined }), {});
});
