// Which layout and colours the Explorer takes in the page that hosts it (JupyterLab, Notebook 7,
// Voila, marimo run / edit, VS Code, Colab...). The choices ("auto" | "full" | "compact" |
// "presentation", "auto" | "light" | "dark") and the thresholds come from the kernel (layout_mode.py);
// this file only measures the container and decides. The pure functions take plain numbers (node tests).

/** The layout to draw: a forced one as it is; "auto" is compact in a narrow or height-capped container. */
export function chooseLayout(requested, { width = 0, heightCap = null, host = "", thresholds = null } = {}) {
  if (requested && requested !== "auto") return requested;
  if (host === "marimo-edit") return "compact"; // caps every cell's output at ~610 px
  if (!thresholds) return "full";
  if (heightCap != null && heightCap < thresholds.compact_height) return "compact";
  if (width > 0 && width < thresholds.compact_width) return "compact";
  return "full";
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
    const layout = chooseLayout(model.get("layout_mode"), { width, heightCap: cap && cap.height, host: hostName, thresholds });
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
