import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { lut, colormapNames } from "../src/colormaps.js";

const source = JSON.parse(readFileSync(new URL("../../cnn_widgets/widgets/colormaps.json", import.meta.url)));

test("every colormap has 256 RGB entries", () => {
  assert.ok(colormapNames().includes("viridis"));
  for (const name of colormapNames()) assert.equal(lut(name).length, 768);
});

test("known endpoints: viridis runs dark purple to yellow, gray is the identity", () => {
  const v = lut("viridis");
  assert.deepEqual([...v.slice(0, 3)], [68, 1, 84]);
  assert.deepEqual([...v.slice(765)], [253, 231, 37]);
  const g = lut("gray");
  for (let i = 0; i < 256; i++) assert.deepEqual([...g.slice(3 * i, 3 * i + 3)], [i, i, i]);
});

test("the LUT bytes are the shared JSON source", () => {
  for (const [name, hex] of Object.entries(source)) assert.equal(Buffer.from(lut(name)).toString("hex"), hex);
});

test("Python's cnn_widgets.widgets.colormaps.lut agrees byte for byte", (t) => {
  const python = process.env.PYTHON || new URL("../../.venv/bin/python", import.meta.url).pathname;
  let out;
  try {
    out = execFileSync(python, ["-c",
      "import json; from cnn_widgets.widgets.colormaps import lut, names; print(json.dumps({n: lut(n).tobytes().hex() for n in names()}))"],
    { cwd: new URL("../..", import.meta.url).pathname, encoding: "utf8" });
  } catch (e) {
    t.skip(`python with cnn_widgets not available (${e.message.split("\n")[0]})`);
    return;
  }
  const fromPython = JSON.parse(out);
  assert.deepEqual(Object.keys(fromPython).sort(), colormapNames().sort());
  for (const name of colormapNames()) assert.equal(Buffer.from(lut(name)).toString("hex"), fromPython[name], name);
});

test("unknown names throw a helpful error", () => {
  assert.throws(() => lut("jet"), /choose one of/);
});
