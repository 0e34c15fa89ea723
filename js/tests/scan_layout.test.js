import test from "node:test";
import assert from "node:assert/strict";
import { topGrid, fitInside, scatterLayout, placePoints, pointAt, scatterThumb, labelColor, LABEL_COLORS, atlasLayout } from "../src/scan_layout.js";
import { previewBox } from "../src/panels/tree.js";
import { fmapLayout } from "../src/panels/feature_maps.js";

test("top images: 9 in a 3 x 3 grid, 4 in 2 x 2, cells within the bounds and the width", () => {
  const nine = topGrid(9, 430);
  assert.deepEqual([nine.cols, nine.rows], [3, 3]);
  assert.equal(nine.cell, Math.floor((430 - 2 * 6) / 3));
  assert.equal(topGrid(4, 900).cell, 150, "capped at maxCell");
  assert.ok(nine.width <= 430);
  const four = topGrid(4, 200, { gap: 6 });
  assert.deepEqual([four.cols, four.rows], [2, 2]);
  assert.equal(four.cell, Math.floor((200 - 6) / 2));
  assert.equal(four.width, 2 * four.cell + 6);
  assert.equal(topGrid(5, 400).rows, 2);
  assert.equal(topGrid(9, 60).cell, 40, "never below minCell");
  assert.deepEqual([topGrid(0, 400).cols, topGrid(0, 400).rows], [1, 1]);
});

test("fitInside keeps the aspect ratio and fills the longer side", () => {
  assert.deepEqual(fitInside(224, 224, 128), [128, 128]);
  assert.deepEqual(fitInside(224, 112, 128), [128, 64]);
  assert.deepEqual(fitInside(19, 38, 76), [38, 76]);
  assert.deepEqual(fitInside(1, 1000, 10), [1, 10]);
});

test("scatter layout: one scale for both axes, the cloud centred inside the margins, y up", () => {
  const xy = new Float32Array([-1, 0, 3, 0, 1, 1, 1, -1]); // span 4 wide, 2 high
  const layout = scatterLayout(xy, 4, 300, 200, 10);
  assert.equal(layout.scale, Math.min(280 / 4, 180 / 2));
  const px = placePoints(xy, 4, layout);
  const xs = [px[0], px[2], px[4], px[6]], ys = [px[1], px[3], px[5], px[7]];
  assert.ok(Math.min(...xs) >= 10 - 1e-6 && Math.max(...xs) <= 290 + 1e-6);
  assert.ok(Math.min(...ys) >= 10 - 1e-6 && Math.max(...ys) <= 190 + 1e-6);
  assert.ok(Math.abs((Math.min(...xs) + Math.max(...xs)) / 2 - 150) < 1e-4, "centred across");
  assert.ok(Math.abs((Math.min(...ys) + Math.max(...ys)) / 2 - 100) < 1e-4, "centred down");
  assert.ok(px[5] < px[7], "larger y is higher on the canvas");
  // distances are the same across and down
  assert.ok(Math.abs((px[2] - px[0]) / 4 - (px[7] - px[5]) / 2) < 1e-4);
});

test("scatter layout of one point or identical points puts them in the middle", () => {
  for (const xy of [new Float32Array([5, 7]), new Float32Array([2, 2, 2, 2])]) {
    const n = xy.length / 2;
    const px = placePoints(xy, n, scatterLayout(xy, n, 100, 60, 5));
    for (let i = 0; i < n; i++) { assert.equal(px[2 * i], 50); assert.equal(px[2 * i + 1], 30); }
  }
  const flat = new Float32Array([0, 1, 10, 1]); // no vertical spread
  const px = placePoints(flat, 2, scatterLayout(flat, 2, 100, 60, 5));
  assert.deepEqual([...px], [5, 30, 95, 30]);
});

test("pointAt finds the nearest centre within the radius, the later one on ties", () => {
  const px = new Float32Array([10, 10, 30, 10, 30, 10]);
  assert.equal(pointAt(px, 3, 12, 11, 5), 0);
  assert.equal(pointAt(px, 3, 29, 10, 5), 2, "points 1 and 2 coincide: the one drawn on top");
  assert.equal(pointAt(px, 3, 20, 30, 5), -1);
  assert.equal(pointAt(px, 0, 10, 10, 5), -1);
});

test("scatter thumbnails shrink as images are added, within bounds; labels get distinct colours", () => {
  assert.equal(scatterThumb(11, 880, 420), 44);
  assert.equal(scatterThumb(100000, 880, 420), 14);
  assert.ok(scatterThumb(300, 880, 420) < scatterThumb(50, 880, 420));
  assert.equal(new Set(LABEL_COLORS).size, 10);
  assert.equal(labelColor(3), LABEL_COLORS[3]);
  assert.equal(labelColor(13), LABEL_COLORS[3]);
  assert.notEqual(labelColor(-1), labelColor(0));
});

test("atlas sheet holds every thumbnail", () => {
  for (const m of [1, 2, 11, 100, 5000]) {
    const sheet = atlasLayout(m, 16);
    assert.ok(sheet.cols * sheet.rows >= m);
    assert.ok(sheet.width <= 32767 && sheet.height <= 32767);
  }
});

test("tree preview: the crop box scales from picture pixels to the preview", () => {
  assert.deepEqual(previewBox([0, 0, 224, 224], [224, 224], 240), [0, 0, 240, 240]);
  assert.deepEqual(previewBox([56, 112, 112, 168], [224, 224], 112), [56, 28, 28, 28]);
  assert.deepEqual(previewBox([10, 20, 30, 60], [100, 200], 100), [10, 10, 20, 20]);
});

test("feature-map grid: the layout depends only on the measured width, never wider than it", () => {
  const a = fmapLayout(112, 14, 14, 878);
  assert.deepEqual(a, fmapLayout(112, 14, 14, 878), "a redraw at the same width gives the same tiles");
  assert.ok(a.width <= 878);
  const narrow = fmapLayout(112, 14, 14, 500);
  assert.ok(narrow.width <= 500 && narrow.tile <= a.tile);
  assert.ok(fmapLayout(112, 14, 14, 2000).width <= 900, "capped at 900 px");
});
