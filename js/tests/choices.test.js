import test from "node:test";
import assert from "node:assert/strict";
import { options, labelOf, range, panelLabel, scanTabs, shownOnlyValues, scanned, unitText } from "../src/choices.js";

const model = (state) => ({ get: (k) => state[k] });
const choices = {
  options: { method: [["gradient", "gradient"], ["grad_cam", "Grad-CAM"]], tab: [["tree", "Contribution tree"]] },
  ranges: { window: { min: 8, max: 224, step: 4 } },
  panels: { fmap: "feature maps" },
  scan_tabs: ["top_images"],
  shown_only: { image_name: ["custom"] },
};

test("menus, labels and ranges are read from the kernel's choices", () => {
  const m = model({ choices });
  assert.deepEqual(options(m, "method"), choices.options.method);
  assert.equal(labelOf(m, "method", "grad_cam"), "Grad-CAM");
  assert.equal(labelOf(m, "method", "unknown"), "unknown");
  assert.deepEqual(range(m, "window"), { min: 8, max: 224, step: 4 });
  assert.equal(panelLabel(m, "fmap"), "feature maps");
  assert.equal(panelLabel(m, "tree"), "tree");
  assert.deepEqual([...scanTabs(m)], ["top_images"]);
  assert.deepEqual(shownOnlyValues(m, "image_name"), ["custom"]);
});

test("before the choices arrive every menu is empty, never an error", () => {
  const m = model({});
  assert.deepEqual(options(m, "method"), []);
  assert.equal(labelOf(m, "method", undefined), "");
  assert.deepEqual(shownOnlyValues(m, "image_name"), []);
  assert.equal(scanned(m), false);
});

test("a unit is written layer[channel], as Python's str(cw.Unit)", () => {
  assert.equal(unitText("blocks.4.2", 7), "blocks.4.2[7]");
  assert.equal(scanned(model({ scan_info: { count: 3 } })), true);
});
