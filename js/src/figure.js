// Figures for slides, made in the browser: a button in each panel's corner (and one in the top bar
// for the whole Explorer) downloads what the panel shows as a PNG at FIGURE_SCALE x its on-screen
// size: its canvases where they are laid out, its text (title, labels, caption) and coloured boxes
// (prediction bars), without its controls. Works the same with a kernel and in a static export.
import { h } from "./dom.js";

export const FIGURE_SCALE = 2; // projectors and slides: twice the CSS pixel size
const SKIP = ".cnnw-controls, .cnnw-figure-button, .cnnw-static-note, select, input, style, [hidden]";

/** Vertical bands [top, bottom) (panel px) that a figure leaves out, merged and sorted. */
export function mergeBands(bands) {
  const sorted = bands.filter(([a, b]) => b > a).sort((p, q) => p[0] - q[0]);
  const out = [];
  for (const [a, b] of sorted) {
    if (out.length && a <= out[out.length - 1][1]) out[out.length - 1][1] = Math.max(out[out.length - 1][1], b);
    else out.push([a, b]);
  }
  return out;
}

/** y in the panel -> y in the figure once the bands above it are removed (inside a band: its top). */
export function shiftY(bands, y) {
  let removed = 0;
  for (const [a, b] of bands) {
    if (y >= b) removed += b - a;
    else if (y > a) return a - removed;
  }
  return y - removed;
}

/** The figure's pixel size for a panel of width x height CSS px with the bands left out. */
export function figureSize(width, height, bands, scale = FIGURE_SCALE) {
  const kept = height - bands.reduce((sum, [a, b]) => sum + (b - a), 0);
  return { width: Math.round(width * scale), height: Math.round(kept * scale) };
}

const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
const transparent = (color) => !color || color === "transparent" || /rgba\(.*,\s*0\)$/.test(color);

/** The rectangle an element is clipped to by its scrolling / overflow-hidden ancestors inside `panel`. */
function clipOf(el, panel) {
  let { left, top, right, bottom } = panel.getBoundingClientRect();
  for (let p = el.parentElement; p && p !== panel; p = p.parentElement) {
    if (getComputedStyle(p).overflow === "visible") continue;
    const r = p.getBoundingClientRect();
    left = Math.max(left, r.left); top = Math.max(top, r.top); right = Math.min(right, r.right); bottom = Math.min(bottom, r.bottom);
  }
  return { left, top, right, bottom };
}

/** Draw `panel` (an element on screen) onto a new canvas at `scale` x; returns the canvas. */
export function composePanel(panel, scale = FIGURE_SCALE) {
  const box = panel.getBoundingClientRect();
  const skipped = (el) => el.closest(SKIP) !== null && panel.contains(el.closest(SKIP));
  const bands = mergeBands([...panel.querySelectorAll(".cnnw-controls, .cnnw-static-note")].filter(shown).map((el) => {
    const r = el.getBoundingClientRect(), margin = parseFloat(getComputedStyle(el).marginBottom) || 0;
    return [r.top - box.top, r.bottom - box.top + margin];
  }));
  // a panel stretched to its row's height ends at its content (plus its bottom padding)
  const contentBottom = Math.max(0, ...[...panel.children].filter((c) => !skipped(c) && shown(c)).map((c) => c.getBoundingClientRect().bottom - box.top));
  const height = Math.min(box.height, contentBottom + (parseFloat(getComputedStyle(panel).paddingBottom) || 0) + 1);
  const size = figureSize(box.width, height, bands, scale);
  const canvas = h("canvas", { width: size.width, height: size.height });
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  const background = getComputedStyle(panel.closest(".cnnw-explorer") || panel).backgroundColor;
  ctx.fillStyle = transparent(background) ? "#fff" : background;
  ctx.fillRect(0, 0, box.width, height);
  const place = (r) => ({ x: r.left - box.left, y: shiftY(bands, r.top - box.top), w: r.width, h: r.height });
  const clipped = (el, draw) => {
    const c = clipOf(el, panel);
    if (c.right <= c.left || c.bottom <= c.top) return;
    const p = place({ left: c.left, top: c.top, width: c.right - c.left, height: c.bottom - c.top });
    ctx.save(); ctx.beginPath(); ctx.rect(p.x, p.y, p.w, p.h); ctx.clip(); draw(); ctx.restore();
  };

  // boxes with a colour (bars, chips) and canvases, in document order (later ones on top)
  for (const el of [panel, ...panel.querySelectorAll("*")]) {
    if (el !== panel && (skipped(el) || !shown(el))) continue;
    const style = getComputedStyle(el);
    const p = place(el.getBoundingClientRect());
    if (el !== panel && !transparent(style.backgroundColor)) {
      clipped(el, () => { ctx.fillStyle = style.backgroundColor; ctx.fillRect(p.x, p.y, p.w, p.h); });
    }
    if (el.tagName === "CANVAS" && el.width > 0 && el.height > 0) {
      clipped(el, () => { ctx.imageSmoothingEnabled = style.imageRendering !== "pixelated"; ctx.drawImage(el, p.x, p.y, p.w, p.h); });
    }
  }
  // text, word by word where the browser put it (so wrapped captions wrap the same)
  const walker = document.createTreeWalker(panel, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || !node.textContent.trim() || skipped(parent) || !shown(parent)) continue;
    const style = getComputedStyle(parent);
    clipped(parent, () => {
      ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
      ctx.fillStyle = style.color;
      ctx.textBaseline = "middle";
      for (const match of node.textContent.matchAll(/\S+/g)) {
        range.setStart(node, match.index); range.setEnd(node, match.index + match[0].length);
        const r = range.getClientRects()[0];
        if (!r) continue;
        const p = place(r);
        ctx.fillText(match[0], p.x, p.y + p.h / 2);
      }
    });
  }
  canvas.dataset.scale = String(scale);
  return canvas;
}

/** Download a canvas as a PNG file (an <a download> click: works from file:// and in Jupyter). */
export function downloadPng(canvas, filename) {
  return new Promise((resolve) => canvas.toBlob((blob) => {
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename, style: "display:none" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
    resolve(blob);
  }, "image/png"));
}

/** A button that saves `target()` (an element) as `<name>.png` at FIGURE_SCALE x. Client-side: live in a static page. */
export function figureButton(name, target, { title = "save as a PNG at 2× (for slides)" } = {}) {
  const button = h("button", { type: "button", class: "cnnw-figure-button", "data-client": "", "data-figure": name, title, text: "⤓ PNG" });
  button.addEventListener("click", () => downloadPng(composePanel(target()), `${name}.png`));
  return button;
}

/** Put a figure button in the top-right corner of a panel element. */
export function addPanelFigureButton(panelEl, name) {
  const button = figureButton(name, () => panelEl);
  panelEl.classList.add("cnnw-has-figure");
  panelEl.prepend(button);
  return button;
}

export const FIGURE_CSS = `
.cnnw-has-figure { position: relative; }
.cnnw-has-figure > h3 { padding-right: 52px; }
.cnnw-figure-button { font-size: 11px !important; line-height: 1.2; padding: 1px 5px; border: 1px solid #cfd5de; border-radius: 4px;
  background: #f7f8fa; color: #4b5565; cursor: pointer; }
.cnnw-figure-button:hover { border-color: #4a7bd0; color: #1d2330; }
.cnnw-has-figure > .cnnw-figure-button { position: absolute; top: 5px; right: 6px; z-index: 2; }
`;
