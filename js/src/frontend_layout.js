// Which layout and colours the Explorer takes in the page that hosts it (JupyterLab, Notebook 7,
// Voila, marimo run / edit, VS Code, Colab...). The choices ("auto" | "full" | "compact" |
// "presentation", "auto" | "light" | "dark") and the thresholds come from the kernel (layout_mode.py);
// this file only measures the container and decides. The pure functions take plain numbers (node tests).

/**
 * The layout to draw: a forced one as it is; "auto" is compact in a narrow or height-capped container.
 * A container is not narrow when the host caps its column's width (widthCap: {max, width} of the nearest
 * ancestor with a max-width in px) at a width the full layout fits and the column is at that cap: the
 * page is wider than the column (marimo run's default `App()`, width "compact", a 740 px column that
 * leaves the widget ~710 px); the full layout then shows its top row two across.
 */
export function chooseLayout(requested, { width = 0, heightCap = null, widthCap = null, host = "", thresholds = null } = {}) {
  if (requested && requested !== "auto") return requested;
  if (host === "marimo-edit") return "compact"; // caps every cell's output at ~610 px
  if (!thresholds) return "full";
  if (heightCap != null && heightCap < thresholds.compact_height) return "compact";
  const columnAtCap = !!widthCap && widthCap.max >= thresholds.compact_width && widthCap.width >= widthCap.max - 1;
  if (width > 0 && width < thresholds.compact_width && !columnAtCap) return "compact";
  return "full";
}

/**
 * The presentation layout's fit to the screen: the most strip rows (3, then 2, then 1), then the
 * largest pinned image (with its predictions under it), then the largest section picture beside it
 * (maxPicture down to minPicture px each). `overflow(rows, pinned, section)` lays the Explorer out so
 * and returns {pinned, section, pinnedSize, sectionSize, rowHeight}: by how many px the image panel and the
 * section's picture overrun the view (<= 0: it fits), the pictures' drawn sizes and the height of a strip row. The image panel
 * does not depend on the section's picture; the section does on the image (the column beside it).
 * Each layout costs the page a full layout (~10 ms in JupyterLab), so a picture is not searched for:
 * it shrinks by what overruns (a picture shorter by n px ends n px higher), then again while that
 * was not enough (a heading or the controls that wrap anew). Returns {rows, pinned, section}; the
 * smallest when nothing fits.
 */
export function fitPresentation(overflow, { rows = [3, 2, 1], maxPicture = 448, minPicture = 224, steps = 6 } = {}) {
  const fewest = rows[rows.length - 1];
  const first = overflow(rows[0], maxPicture, maxPicture);
  let over = first;
  for (const r of rows) {
    if (r !== rows[0]) {
      // a strip row fewer gains its height: skip the counts that cannot gain enough (not the last)
      if (r !== fewest && (rows[0] - r) * (first.rowHeight || 0) < Math.max(first.pinned, first.section)) continue;
      over = overflow(r, maxPicture, maxPicture);
    }
    if (over.pinned <= 0 && over.section <= 0) return { rows: r, pinned: maxPicture, section: maxPicture };
  }
  const shrink = (size, drawn, by) => Math.max(minPicture, Math.min(size - 1, Math.floor(drawn - by)));
  let pinned = maxPicture;
  for (let i = 0; i < steps && over.pinned > 0 && pinned > minPicture; i++) {
    pinned = shrink(pinned, over.pinnedSize, over.pinned);
    over = overflow(fewest, pinned, maxPicture);
  }
  let section = maxPicture;
  for (let i = 0; i < steps && over.section > 0 && section > minPicture; i++) {
    section = shrink(section, over.sectionSize, over.section);
    over = overflow(fewest, pinned, section);
  }
  return { rows: fewest, pinned, section };
}

/** The theme to draw: a forced one as it is; "auto" follows the host page. */
export function chooseTheme(requested, hostIsDark) {
  if (requested === "light" || requested === "dark") return requested;
  return hostIsDark ? "dark" : "light";
}

/** [r, g, b, a] (0-255, alpha 0-1) of a CSS colour string "rgb(...)" / "rgba(...)" / "#rgb" / "#rrggbb"; null otherwise. */
export function parseColor(text) {
  const s = String(text || "").trim();
  let m = s.match(/^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+([\d.]+%?))?\s*\)$/i);
  if (m) {
    let a = m[4] === undefined ? 1 : m[4].endsWith("%") ? parseFloat(m[4]) / 100 : parseFloat(m[4]);
    return [Number(m[1]), Number(m[2]), Number(m[3]), a];
  }
  m = s.match(/^#([0-9a-f]{3}|[0-9a-f]{6})$/i);
  if (m) {
    const hex = m[1].length === 3 ? m[1].split("").map((c) => c + c).join("") : m[1];
    return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)).concat(1);
  }
  return null;
}

/** WCAG relative luminance of an sRGB colour [r, g, b] (0-255). */
export function luminance([r, g, b]) {
  const lin = (c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** WCAG contrast ratio of two colours (1 to 21); a foreground with alpha is blended over the background. */
export function contrastRatio(fg, bg) {
  const a = fg.length > 3 ? fg[3] : 1;
  const over = [0, 1, 2].map((i) => a * fg[i] + (1 - a) * bg[i]);
  const [l1, l2] = [luminance(over), luminance(bg)].sort((x, y) => y - x);
  return (l1 + 0.05) / (l2 + 0.05);
}

// ------------------------------------------------------------------------------------- page probes
/** The element's parent, stepping out of a shadow root (marimo draws widgets in one). */
function parentOf(node) {
  if (node.parentElement) return node.parentElement;
  const root = node.getRootNode && node.getRootNode();
  return root && root.host ? root.host : null;
}

function* ancestors(el) {
  for (let node = parentOf(el); node; node = parentOf(node)) yield node;
}

/** Which front end draws the widget, from what each one puts in the page. */
export function detectHost(el) {
  const doc = el.ownerDocument || document;
  const win = doc.defaultView || {};
  for (const node of ancestors(el)) {
    if (node.tagName === "MARIMO-ANYWIDGET" || node.tagName === "MARIMO-UI-ELEMENT") {
      const mode = (win.__MARIMO_MOUNT_CONFIG__ || {}).mode;
      return mode === "edit" ? "marimo-edit" : "marimo-run";
    }
  }
  const body = doc.body;
  if (!body) return "";
  if (body.dataset.voilaWidgets !== undefined || doc.querySelector("script[src*='voila'], link[href*='voila']")) return "voila";
  if (body.classList.contains("vscode-light") || body.classList.contains("vscode-dark") || body.dataset.vscodeThemeKind) return "vscode";
  if (win.google && win.google.colab) return "colab";
  if (body.dataset.notebook !== undefined || doc.querySelector("#main-panel.jp-NotebookApp, .jp-NotebookShell")) return "notebook";
  if (body.dataset.jpThemeLight !== undefined) return "jupyterlab";
  return "";
}

/** The nearest scrolling or clipping ancestor with a max-height in px: {height, element}, or null when none caps the widget. */
export function findHeightCap(el) {
  for (const node of ancestors(el)) {
    if (!(node instanceof Element)) continue;
    const style = getComputedStyle(node);
    const max = parseFloat(style.maxHeight);
    if (Number.isFinite(max) && style.maxHeight.endsWith("px") && style.overflowY !== "visible") return { height: max, element: node };
  }
  return null;
}

/** The nearest ancestor whose max-width is in px: {max, width} (its cap and its width now), or null. */
export function findWidthCap(el) {
  for (const node of ancestors(el)) {
    if (!(node instanceof Element)) continue;
    const max = getComputedStyle(node).maxWidth;
    if (max.endsWith("px") && Number.isFinite(parseFloat(max))) return { max: parseFloat(max), width: node.getBoundingClientRect().width };
  }
  return null;
}

/**
 * The view the page scrolls the widget in: {height, element}, its nearest ancestor that scrolls (JupyterLab's
 * notebook panel, a capped marimo output), else the window (element: the document's scrolling element).
 * The height the presentation layout must fit.
 */
export function scrollView(el) {
  const doc = el.ownerDocument || document;
  const win = doc.defaultView || window;
  for (const node of ancestors(el)) {
    if (!(node instanceof Element) || node === doc.body || node === doc.documentElement) continue;
    if (/(auto|scroll)/.test(getComputedStyle(node).overflowY) && node.scrollHeight > node.clientHeight + 1) {
      return { height: Math.min(node.clientHeight, win.innerHeight), element: node };
    }
  }
  return { height: win.innerHeight, element: doc.scrollingElement || doc.documentElement };
}

/** Whether the page around the widget is dark: the hosts' own markers first, then the background colour. */
export function hostIsDark(el) {
  const doc = el.ownerDocument || document;
  const body = doc.body;
  if (body) {
    if (body.dataset.jpThemeLight === "false") return true; // JupyterLab, Notebook 7, Voila
    if (body.dataset.jpThemeLight === "true") return false;
    if (body.classList.contains("vscode-dark") || body.classList.contains("vscode-high-contrast")) return true;
    if (body.classList.contains("dark") || doc.documentElement.classList.contains("dark")) return true; // marimo
    if (body.classList.contains("light") || body.classList.contains("vscode-light")) return false;
  }
  for (const node of ancestors(el)) {
    if (!(node instanceof Element)) continue;
    const color = parseColor(getComputedStyle(node).backgroundColor);
    if (color && color[3] > 0.5) return luminance(color) < 0.2;
  }
  return false;
}

/**
 * Keep root's data-layout / data-theme / data-host current: on the traits, on the container's
 * width and on the host's theme switches. `apply(layout)` runs after each change of layout.
 * Returns the cleanup.
 */
export function followFrontEnd(model, root, host, apply) {
  let width = 0, frame = 0, lastLayout = "";
  const hostName = detectHost(host);
  root.dataset.host = hostName || "unknown";
  function update() {
    frame = 0;
    const thresholds = (model.get("choices") || {}).layout || null;
    const cap = findHeightCap(host);
    const layout = chooseLayout(model.get("layout_mode"), { width, heightCap: cap && cap.height, widthCap: findWidthCap(host), host: hostName, thresholds });
    root.dataset.theme = chooseTheme(model.get("theme"), hostIsDark(host));
    root.dataset.followHost = String(model.get("theme") === "auto" || !model.get("theme"));
    if (layout !== lastLayout) { lastLayout = layout; root.dataset.layout = layout; apply(layout); }
  }
  const schedule = () => { if (!frame) frame = requestAnimationFrame(update); };
  const events = ["change:layout_mode", "change:theme", "change:choices"];
  for (const e of events) model.on(e, schedule);
  const resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => {
    const w = host.clientWidth;
    if (w > 0 && w !== width) { width = w; schedule(); }
  });
  if (resize) resize.observe(host);
  // theme switches change an attribute or class of <body> / <html>
  const doc = host.ownerDocument || document;
  const themeWatch = typeof MutationObserver === "undefined" ? null : new MutationObserver(schedule);
  if (themeWatch) for (const node of [doc.documentElement, doc.body]) if (node) themeWatch.observe(node, { attributes: true, attributeFilter: ["class", "data-jp-theme-light", "data-jp-theme-name"] });
  width = host.clientWidth;
  update();
  schedule(); // again once laid out (the cap and the width are known only then)
  return () => {
    for (const e of events) model.off(e, schedule);
    if (resize) resize.disconnect();
    if (themeWatch) themeWatch.disconnect();
    if (frame) cancelAnimationFrame(frame);
  };
}
