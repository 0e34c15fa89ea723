import test from "node:test";
import assert from "node:assert/strict";
import { gridLayout, tileAt, tileOrigin, naturalTile } from "../src/layout.js";
import { renderTiles, blendHeat, filterLayout } from "../src/pixels.js";
import { fitSize } from "../src/image_input.js";

test("grid fits the width and places channel c at (c % cols, floor(c / cols))", () => {
  const layout = gridLayout({ count: 1280, maxWidth: 860, maxHeight: 420, minTile: 10, maxTile: 112, gap: 2 });
  assert.ok(layout.width <= 860);
  assert.equal(layout.width, layout.gap + layout.cols * (layout.tile + layout.gap));
  assert.equal(layout.rows, Math.ceil(1280 / layout.cols));
  assert.deepEqual(tileOrigin(layout, 0), [2, 2]);
  const c = layout.cols + 3;
  assert.deepEqual(tileOrigin(layout, c), [2 + 3 * (layout.tile + 2), 2 + (layout.tile + 2)]);
});

test("few channels get big tiles within the height budget", () => {
  const layout = gridLayout({ count: 16, maxWidth: 860, maxHeight: 420, minTile: 10, maxTile: 112, gap: 2 });
  assert.ok(layout.height <= 420);
  assert.ok(layout.tile >= 80, `tile ${layout.tile}`);
  const one = gridLayout({ count: 1, maxWidth: 860, maxTile: 50 });
  assert.equal(one.cols, 1);
  assert.equal(one.tile, 50);
});

test("tileAt inverts tileOrigin and rejects gaps and empty cells", () => {
  const layout = gridLayout({ count: 10, maxWidth: 200, maxTile: 30, minTile: 30, gap: 3 });
  for (let c = 0; c < 10; c++) {
    const [x, y] = tileOrigin(layout, c);
    assert.equal(tileAt(layout, x, y), c);
    assert.equal(tileAt(layout, x + layout.tile - 1, y + layout.tile - 1), c);
    assert.equal(tileAt(layout, x + layout.tile, y), -1, "gap right of the tile");
  }
  assert.equal(tileAt(layout, 0, 0), -1);
  const [x, y] = tileOrigin(layout, 10 % layout.cols === 0 ? 10 : 10);
  if (10 % layout.cols !== 0) assert.equal(tileAt(layout, x, y), -1, "past the last channel");
});

test("naturalTile uses integer zoom of small maps", () => {
  assert.equal(naturalTile(7, 7, { maxTile: 112 }), 112);
  assert.equal(naturalTile(14, 14, { maxTile: 100 }), 98);
  assert.equal(naturalTile(224, 224, { maxTile: 112 }), 112);
});

test("renderTiles samples maps by nearest neighbour through the LUT", () => {
  const lut = new Uint8Array(768);
  for (let v = 0; v < 256; v++) lut.set([v, 255 - v, 7], 3 * v);
  const h = 2, w = 3, C = 3;
  const maps = Uint8Array.from({ length: C * h * w }, (_, i) => i * 10);
  const layout = gridLayout({ count: C, maxWidth: 50, minTile: 6, maxTile: 6, gap: 1 });
  const rgba = renderTiles(maps, C, h, w, layout, lut, [255, 255, 255]);
  for (let c = 0; c < C; c++) {
    const [x0, y0] = tileOrigin(layout, c);
    for (let ty = 0; ty < layout.tile; ty++) for (let tx = 0; tx < layout.tile; tx++) {
      const v = maps[c * h * w + Math.floor((ty * h) / layout.tile) * w + Math.floor((tx * w) / layout.tile)];
      const o = ((y0 + ty) * layout.width + x0 + tx) * 4;
      assert.deepEqual([...rgba.slice(o, o + 4)], [v, 255 - v, 7, 255]);
    }
  }
  assert.deepEqual([...rgba.slice(0, 4)], [255, 255, 255, 255], "gap pixels are the background");
  const clear = renderTiles(maps, C, h, w, layout, lut, [0, 0, 0, 0]);
  assert.deepEqual([...clear.slice(0, 4)], [0, 0, 0, 0], "a transparent background leaves the gaps see-through");
  const [x0, y0] = tileOrigin(layout, 2);
  const o = (y0 * layout.width + x0) * 4;
  assert.deepEqual([...clear.slice(o, o + 4)], [maps[12], 255 - maps[12], 7, 255], "tiles stay opaque");
});

test("blendHeat: zero opacity is the image, full opacity at 255 is the colour", () => {
  const lut = new Uint8Array(768).fill(0);
  lut.set([255, 0, 0], 255 * 3);
  const image = Uint8Array.from([10, 20, 30, 40, 50, 60]);
  const heat = Uint8Array.from([0, 255]);
  assert.deepEqual([...blendHeat(image, 1, 2, heat, 1, 2, lut, 0)], [10, 20, 30, 255, 40, 50, 60, 255]);
  assert.deepEqual([...blendHeat(image, 1, 2, heat, 1, 2, lut, 1)], [10, 20, 30, 255, 255, 0, 0, 255]);
});

test("filterLayout fits a wide weight matrix into the width", () => {
  const layout = filterLayout(1, 112, 672, 860, { maxHeight: 320 });
  assert.ok(layout.width <= 860 && layout.height <= 320 + 4);
  const many = filterLayout(32, 3, 3, 860, { maxHeight: 320, maxTile: 40 });
  assert.ok(many.width <= 860);
});

test("uploads are scaled to at most 1024 px on the long side", () => {
  assert.deepEqual(fitSize(4000, 3000), [1024, 768]);
  assert.deepEqual(fitSize(640, 480), [640, 480]);
});
