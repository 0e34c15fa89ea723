import test from "node:test";
import assert from "node:assert/strict";
import { chooseLayout, chooseTheme, contrastRatio, fitPresentation, luminance, parseColor } from "../src/frontend_layout.js";
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

test("auto: a narrow container in a host column at its width cap (marimo run's default App()) is not a narrow screen", () => {
  // marimo run, App() (width "compact"): the column is capped at 740 px and at its cap; the widget gets ~711 px
  const marimoCompact = { max: 740, width: 740 };
  assert.equal(chooseLayout("auto", { width: 711, widthCap: marimoCompact, host: "marimo-run", thresholds }), "full");
  assert.equal(chooseLayout("auto", { width: 708, widthCap: { max: 740, width: 739.5 }, host: "marimo-run", thresholds }), "full");
  // the same app on a narrow page: the column is below its cap, the screen is narrow
  assert.equal(chooseLayout("auto", { width: 560, widthCap: { max: 740, width: 590 }, host: "marimo-run", thresholds }), "compact");
  // a column capped below what the full layout needs stays compact; a height cap still wins; a forced layout is kept
  assert.equal(chooseLayout("auto", { width: 600, widthCap: { max: 640, width: 640 }, thresholds }), "compact");
  assert.equal(chooseLayout("auto", { width: 711, widthCap: marimoCompact, heightCap: 610, thresholds }), "compact");
  assert.equal(chooseLayout("auto", { width: 711, widthCap: marimoCompact, host: "marimo-edit", thresholds }), "compact");
  assert.equal(chooseLayout("compact", { width: 711, widthCap: marimoCompact, host: "marimo-run", thresholds }), "compact");
  // the cap's threshold is the kernel's compact width
  assert.equal(chooseLayout("auto", { width: 711, widthCap: marimoCompact, thresholds: { compact_width: 760, compact_height: 900 } }), "compact");
});

/**
 * A stand-in for the Explorer's presentation layout (px): the image panel is `head` + strip + image + predictions
 * tall, the section's picture ends at `head` + strip + tabs and controls + its picture; the section's picture is
 * also at most the width beside the image (`stage` - image). Below `wrapBelow` px the image's heading wraps
 * onto a second line (27 px more). `calls` records every layout asked for.
 */
function standIn({ view, head = 150, predictions = 200, controls = 120, stage = 820, wrapBelow = 0, calls = [] }) {
  return (rows, pinned, section) => {
    calls.push([rows, pinned, section]);
    const strip = rows * 44, shown = Math.min(section, stage - pinned - 24), heading = pinned < wrapBelow ? 27 : 0;
    return { pinned: head + heading + strip + pinned + predictions - view, section: head + strip + controls + shown - view,
      pinnedSize: pinned, sectionSize: shown, rowHeight: 44 };
  };
}

test("presentation fit: the whole strip and pictures when they fit", () => {
  assert.deepEqual(fitPresentation(standIn({ view: 2000 })), { rows: 3, pinned: 448, section: 448 });
  // the strip gives up rows before the pictures shrink; a count of rows that cannot gain enough is not laid out
  const calls = [];
  assert.deepEqual(fitPresentation(standIn({ view: 150 + 44 + 448 + 200, calls })), { rows: 1, pinned: 448, section: 448 });
  assert.deepEqual(calls.map((c) => c[0]), [3, 1]);
  calls.length = 0;
  assert.deepEqual(fitPresentation(standIn({ view: 150 + 88 + 448 + 200, calls })), { rows: 2, pinned: 448, section: 448 });
  assert.deepEqual(calls.map((c) => c[0]), [3, 2]);
  // without a row height (no layers): straight to one row
  const noHeight = (rows, pinned, section) => ({ ...standIn({ view: 150 + 88 + 448 + 200 })(rows, pinned, section), rowHeight: 0 });
  assert.deepEqual(fitPresentation(noHeight), { rows: 1, pinned: 448, section: 448 });
});

test("presentation fit: then the largest image, then the largest section picture beside it, in few layouts", () => {
  // a 1280x800 JupyterLab: the view is 673 px; the image with its predictions decides the image, the section its own
  const view = 673, calls = [];
  const fit = fitPresentation(standIn({ view, head: 140, predictions: 190, controls: 110, calls }));
  assert.equal(fit.rows, 1);
  assert.equal(fit.pinned, view - 140 - 44 - 190); // exactly the largest that fits
  assert.equal(fit.section, view - 140 - 44 - 110);
  const over = standIn({ view, head: 140, predictions: 190, controls: 110 });
  assert.ok(over(1, fit.pinned, fit.section).pinned <= 0 && over(1, fit.pinned + 1, fit.section).pinned > 0);
  assert.ok(over(1, fit.pinned, fit.section).section <= 0 && over(1, fit.pinned, fit.section + 1).section > 0);
  assert.ok(calls.length <= 4, `${calls.length} layouts: ${JSON.stringify(calls)}`); // 2 strips, one image, one section
  // a narrow stage: the section's picture is held by the width beside the image, so it may stay at its largest
  assert.deepEqual(fitPresentation(standIn({ view: 700, predictions: 400, stage: 500 })), { rows: 1, pinned: 224, section: 448 });
});

test("presentation fit: a shrink that wraps a heading shrinks again until it fits", () => {
  const model = { view: 673, head: 140, predictions: 190, controls: 110, wrapBelow: 330 };
  const fit = fitPresentation(standIn(model));
  assert.equal(fit.pinned, 673 - 140 - 27 - 44 - 190); // 299 wrapped the heading: 27 px less
  assert.ok(standIn(model)(1, fit.pinned, fit.section).pinned <= 0);
});

test("presentation fit: nothing fits, the smallest; bounds are the caller's", () => {
  assert.deepEqual(fitPresentation(standIn({ view: 100 })), { rows: 1, pinned: 224, section: 224 });
  assert.deepEqual(fitPresentation(standIn({ view: 100 }), { rows: [2, 1], maxPicture: 300, minPicture: 160 }), { rows: 1, pinned: 160, section: 160 });
  assert.deepEqual(fitPresentation(standIn({ view: 2000 }), { rows: [2, 1], maxPicture: 300 }), { rows: 2, pinned: 300, section: 300 });
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
