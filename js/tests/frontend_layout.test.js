import test from "node:test";
import assert from "node:assert/strict";
import { chooseLayout, chooseTheme, contrastRatio, luminance, parseColor } from "../src/frontend_layout.js";
import { CSS } from "../src/styles.js";

// the numbers layout_mode.py sends in choices["layout"] (the test passes its own: the function must use them)
const thresholds = { compact_width: 720, compact_height: 900 };

test("a forced layout is kept whatever the container", () => {
  for (const layout of ["full", "compact", "presentation"]) {
    assert.equal(chooseLayout(layout, { width: 300, heightCap: 400, host: "marimo-edit", thresholds }), layout);
    assert.equal(chooseLayout(layout, { width: 2000, heightCap: null, host: "jupyterlab", thresholds }), layout);
  }
});

test("auto: compact in marimo edit, in a narrow container or under a height cap; full otherwise", () => {
  assert.equal(chooseLayout("auto", { width: 1100, host: "marimo-edit", thresholds }), "compact");
  assert.equal(chooseLayout("auto", { width: 1100, host: "marimo-run", thresholds }), "full");
  assert.equal(chooseLayout("auto", { width: 1100, host: "jupyterlab", thresholds }), "full");
  assert.equal(chooseLayout("auto", { width: 719, host: "jupyterlab", thresholds }), "compact");
  assert.equal(chooseLayout("auto", { width: 720, host: "jupyterlab", thresholds }), "full");
  assert.equal(chooseLayout("auto", { width: 1100, heightCap: 610, host: "", thresholds }), "compact");
  assert.equal(chooseLayout("auto", { width: 1100, heightCap: 900, host: "", thresholds }), "full");
  // the thresholds come from the kernel: other numbers, other answers
  assert.equal(chooseLayout("auto", { width: 719, thresholds: { compact_width: 500, compact_height: 300 } }), "full");
  assert.equal(chooseLayout("auto", { width: 600, thresholds: { compact_width: 640, compact_height: 300 } }), "compact");
  // not measured yet (width 0) or no thresholds (an old saved state): full
  assert.equal(chooseLayout("auto", { width: 0, thresholds }), "full");
  assert.equal(chooseLayout("auto", { width: 300 }), "full");
});

test("theme: forced light/dark kept, auto follows the host", () => {
  assert.equal(chooseTheme("dark", false), "dark");
  assert.equal(chooseTheme("light", true), "light");
  assert.equal(chooseTheme("auto", true), "dark");
  assert.equal(chooseTheme("auto", false), "light");
});

test("colour parsing and WCAG contrast", () => {
  assert.deepEqual(parseColor("rgb(17, 17, 17)"), [17, 17, 17, 1]);
  assert.deepEqual(parseColor("rgba(255, 255, 255, 0.87)"), [255, 255, 255, 0.87]);
  assert.deepEqual(parseColor("#fff"), [255, 255, 255, 1]);
  assert.deepEqual(parseColor("#1d2330"), [29, 35, 48, 1]);
  assert.equal(parseColor("transparent"), null);
  assert.ok(Math.abs(contrastRatio([0, 0, 0], [255, 255, 255]) - 21) < 1e-9);
  // WCAG's worked value: #777 on white is 4.48
  assert.ok(Math.abs(contrastRatio([0x77, 0x77, 0x77], [255, 255, 255]) - 4.48) < 0.01);
  assert.ok(Math.abs(luminance([255, 255, 255]) - 1) < 1e-12);
  // alpha blends over the background: 87% white on black is 0.87 * 255 = 221.85 grey
  const blended = contrastRatio([255, 255, 255, 0.87], [0, 0, 0]);
  assert.ok(Math.abs(blended - contrastRatio([221.85, 221.85, 221.85], [0, 0, 0])) < 1e-9);
});

/** The --cnnw-* variables declared in the CSS block whose selector is exactly `selector`. */
function palette(selector) {
  const start = CSS.indexOf(`${selector} {`);
  assert.ok(start >= 0, `no block ${selector}`);
  const block = CSS.slice(start, CSS.indexOf("}", start));
  return Object.fromEntries([...block.matchAll(/--cnnw-([a-z0-9-]+):\s*(#[0-9a-f]{3,6})/gi)].map((m) => [m[1], parseColor(m[2])]));
}

test("both palettes: every text colour on its background has contrast >= 4.5 (WCAG AA)", () => {
  const light = palette(".cnnw-explorer");
  const dark = { ...light, ...palette('.cnnw-explorer[data-theme="dark"]') };
  const pairs = [["fg", "bg"], ["muted", "bg"], ["fg", "surface"], ["fg", "surface-2"], ["fg", "control-bg"], ["muted", "surface"],
    ["fg", "hover"], ["fg", "bar-fill"], ["strong-fg", "strong-bg"], ["ok-fg", "ok-bg"], ["busy-fg", "busy-bg"], ["err-fg", "err-bg"],
    ["fg", "accent-soft"]];
  for (const [name, colors] of [["light", light], ["dark", dark]]) {
    for (const [fg, bg] of pairs) {
      assert.ok(colors[fg] && colors[bg], `${name}: --cnnw-${fg} / --cnnw-${bg} declared`);
      const ratio = contrastRatio(colors[fg], colors[bg]);
      assert.ok(ratio >= 4.5, `${name}: --cnnw-${fg} on --cnnw-${bg} contrast ${ratio.toFixed(2)} < 4.5`);
    }
    // placeholders and the selected layer's small text: large enough to read (AA for non-text is 3)
    assert.ok(contrastRatio(colors.faint, colors.bg) >= 3, `${name}: placeholder text`);
    assert.ok(contrastRatio(colors["strong-muted"], colors["strong-bg"]) >= 3, `${name}: selected layer's shape`);
  }
  assert.ok(luminance(dark.bg) < 0.05 && luminance(light.bg) > 0.9, "dark is dark, light is light");
});
