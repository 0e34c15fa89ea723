// Scoped styles (every selector starts with .cnnw-explorer). Sizes in px so the layout is the
// same at any notebook font size; 13px text stays readable on a projector at 100% zoom.
// Colours are variables: a light and a dark palette (root[data-theme], frontend_layout.js), and with
// theme "auto" (root[data-follow-host]) the host's own variables where it has them: --jp-* in
// JupyterLab / Notebook 7 / Voila, marimo's --background / --foreground..., VS Code's --vscode-*.
// Every control is styled explicitly: marimo's CSS reset leaves selects, buttons and inputs as bare
// text. Generic control rules use :where() so that any class rule (ours or a later block) wins.
// Layouts (root[data-layout], arrange.js): full, compact (sections in tabs), presentation (large).
export const CSS = `
.cnnw-explorer { --cnnw-fg: #1d2330; --cnnw-bg: #fff; --cnnw-muted: #596173; --cnnw-faint: #8a91a0;
  --cnnw-border: #d5d9e0; --cnnw-line: #e3e6eb; --cnnw-surface: #f7f8fa; --cnnw-surface-2: #f3f4f6; --cnnw-hover: #f1f4f8;
  --cnnw-control-bg: #fff; --cnnw-control-border: #aab2bf; --cnnw-accent: #3b6fc9; --cnnw-accent-soft: #f3f7fd; --cnnw-accent-line: #9db8e5;
  --cnnw-strong-bg: #1d2330; --cnnw-strong-fg: #fff; --cnnw-strong-muted: #d5d9e0; --cnnw-bar-fill: #cfe0f5; --cnnw-selected: #e07b00;
  --cnnw-ok-bg: #e8f3ea; --cnnw-ok-fg: #1f6b34; --cnnw-busy-bg: #fff4d6; --cnnw-busy-fg: #7a5600; --cnnw-err-bg: #fde8e8; --cnnw-err-fg: #9b1c1c;
  --cnnw-pending-a: #eceff3; --cnnw-pending-b: #f6f7f9; --cnnw-shadow: rgba(29, 35, 48, 0.25);
  --cnnw-font: system-ui, -apple-system, "Segoe UI", sans-serif; color-scheme: light;
  font: 13px/1.35 var(--cnnw-font); color: var(--cnnw-fg);
  max-width: 920px; box-sizing: border-box; padding: 8px; border: 1px solid var(--cnnw-border); border-radius: 8px; background: var(--cnnw-bg); }
.cnnw-explorer[data-theme="dark"] { --cnnw-fg: #e6e9ef; --cnnw-bg: #1b1f27; --cnnw-muted: #aeb6c4; --cnnw-faint: #8d95a3;
  --cnnw-border: #3d4452; --cnnw-line: #343a46; --cnnw-surface: #262b35; --cnnw-surface-2: #2b313c; --cnnw-hover: #2e3542;
  --cnnw-control-bg: #232833; --cnnw-control-border: #5b6475; --cnnw-accent: #7aa7f0; --cnnw-accent-soft: #233048; --cnnw-accent-line: #4f6fa8;
  --cnnw-strong-bg: #d7e3fa; --cnnw-strong-fg: #111722; --cnnw-strong-muted: #3a4558; --cnnw-bar-fill: #2f4d78; --cnnw-selected: #ffa03a;
  --cnnw-ok-bg: #1d3b27; --cnnw-ok-fg: #9be0b0; --cnnw-busy-bg: #463812; --cnnw-busy-fg: #ffd97a; --cnnw-err-bg: #4a1f22; --cnnw-err-fg: #ffb4b4;
  --cnnw-pending-a: #2a303a; --cnnw-pending-b: #323945; --cnnw-shadow: rgba(0, 0, 0, 0.6); color-scheme: dark; }
/* theme "auto": the host's colours and font where it defines them (the palette above otherwise) */
.cnnw-explorer[data-follow-host="true"][data-theme="light"] { --cnnw-bg: var(--jp-layout-color0, var(--vscode-editor-background, #fff));
  --cnnw-fg: var(--jp-ui-font-color1, var(--vscode-editor-foreground, #1d2330)); --cnnw-border: var(--jp-border-color1, #d5d9e0);
  --cnnw-line: var(--jp-border-color2, #e3e6eb); --cnnw-font: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif); }
.cnnw-explorer[data-follow-host="true"][data-theme="dark"] { --cnnw-bg: var(--jp-layout-color0, var(--vscode-editor-background, #1b1f27));
  --cnnw-fg: var(--jp-ui-font-color0, var(--vscode-editor-foreground, #e6e9ef)); --cnnw-border: var(--jp-border-color1, #3d4452);
  --cnnw-line: var(--jp-border-color2, #343a46); --cnnw-surface: var(--jp-layout-color2, #262b35); --cnnw-control-bg: var(--jp-layout-color1, #232833);
  --cnnw-font: var(--jp-ui-font-family, system-ui, -apple-system, "Segoe UI", sans-serif); }
.cnnw-explorer[data-follow-host="true"][data-host^="marimo"] { --cnnw-bg: var(--background, #fff); --cnnw-fg: var(--foreground, #1d2330);
  --cnnw-muted: var(--muted-foreground, #596173); --cnnw-border: var(--border, #d5d9e0); --cnnw-control-border: var(--input, #aab2bf); }
.cnnw-explorer *, .cnnw-explorer *::before, .cnnw-explorer *::after { box-sizing: border-box; }
.cnnw-explorer canvas { display: block; max-width: 100%; height: auto; image-rendering: pixelated; }
/* a small model's input (16 px digits) is drawn at least 192 px wide, its pixels kept sharp */
.cnnw-explorer :is(.cnnw-image, .cnnw-saliency, .cnnw-occlusion) { min-width: min(100%, 192px); }
.cnnw-explorer h3 { color: inherit; }
/* controls, explicitly (hosts' resets strip borders, backgrounds and padding) */
.cnnw-explorer :where(select, button, input) { font: inherit; color: var(--cnnw-fg); margin: 0; }
.cnnw-explorer :where(select, input[type=number], input[type=text]) { background: var(--cnnw-control-bg); border: 1px solid var(--cnnw-control-border);
  border-radius: 4px; padding: 2px 4px; min-height: 24px; line-height: 1.2; }
.cnnw-explorer :where(select) { max-width: 100%; cursor: pointer; }
.cnnw-explorer :where(button) { background: var(--cnnw-surface); border: 1px solid var(--cnnw-control-border); border-radius: 4px;
  padding: 2px 8px; min-height: 24px; cursor: pointer; line-height: 1.2; }
.cnnw-explorer :where(button:hover:not(:disabled)) { border-color: var(--cnnw-accent); }
.cnnw-explorer :where(select, button, input):focus-visible { outline: 2px solid var(--cnnw-accent); outline-offset: 1px; }
.cnnw-explorer :where(input[type=range]) { accent-color: var(--cnnw-accent); background: transparent; border: 0; padding: 0; vertical-align: middle; }
.cnnw-explorer :where(input[type=checkbox], input[type=radio]) { accent-color: var(--cnnw-accent); appearance: auto; }
.cnnw-explorer :where(input[type=file]) { border: 0; background: transparent; padding: 0; color: var(--cnnw-muted); }
.cnnw-explorer input[type=file]::file-selector-button { font: inherit; color: var(--cnnw-fg); background: var(--cnnw-surface);
  border: 1px solid var(--cnnw-control-border); border-radius: 4px; padding: 2px 8px; margin-right: 6px; cursor: pointer; }
.cnnw-explorer input[type=file]::file-selector-button:hover { border-color: var(--cnnw-accent); }
.cnnw-explorer [hidden] { display: none !important; }
.cnnw-bar { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; margin-bottom: 8px; }
.cnnw-bar label { display: inline-flex; gap: 6px; align-items: center; white-space: nowrap; min-width: 0; }
.cnnw-image-input { display: inline-flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; }
/* the target menu never cuts its label (the selected unit with its channel): it keeps its natural width (that of its
   longest entry) and the bar wraps it onto the next line when the line is full; only a container narrower than
   the menu itself makes it shrink */
.cnnw-bar .cnnw-explain { flex: 0 1 auto; min-width: auto; max-width: 100%; }
.cnnw-file { max-width: 210px; }
.cnnw-explain select { min-width: 0; max-width: 100%; flex: 0 1 auto; text-overflow: ellipsis; }
.cnnw-layout-menu { flex: none; }
/* fixed width, one line: the bar does not reflow (or grow a line) when the status text changes */
.cnnw-status { margin-left: auto; flex: none; width: 11em; text-align: center; padding: 2px 8px; border-radius: 10px;
  background: var(--cnnw-ok-bg); color: var(--cnnw-ok-fg); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.cnnw-explorer[data-status="busy"] .cnnw-status { background: var(--cnnw-busy-bg); color: var(--cnnw-busy-fg); }
.cnnw-explorer[data-status="error"] .cnnw-status { background: var(--cnnw-err-bg); color: var(--cnnw-err-fg); }
.cnnw-error { white-space: pre-wrap; color: var(--cnnw-err-fg); background: var(--cnnw-err-bg); border-radius: 6px; padding: 6px 8px; margin-bottom: 8px; }
.cnnw-error:empty { display: none; }
.cnnw-row { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 10px; margin-bottom: 10px; }
.cnnw-row:empty { display: none; }
.cnnw-panel { border: 1px solid var(--cnnw-line); background: var(--cnnw-bg); border-radius: 6px; padding: 6px; min-width: 0; }
.cnnw-panel h3 { font-size: 13px; margin: 0 0 6px; font-weight: 600; }
.cnnw-panel .cnnw-caption { color: var(--cnnw-muted); font-size: 12px; margin-top: 4px; overflow-wrap: anywhere; }
/* the top row's captions keep three lines: a new target's longer (or shorter) caption does not move what is below */
.cnnw-top-row .cnnw-panel > .cnnw-caption { line-height: 1.35; min-height: calc(3 * 1.35em); }
.cnnw-controls { display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; margin-bottom: 6px; }
.cnnw-controls label { display: inline-flex; gap: 4px; align-items: center; }
.cnnw-controls input[type=range] { width: 90px; }
.cnnw-slider-value { min-width: 2.2em; display: inline-block; text-align: right; font-variant-numeric: tabular-nums; }
.cnnw-predictions { display: grid; gap: 2px; margin-top: 6px; }
.cnnw-explorer .cnnw-pred { display: grid; grid-template-columns: minmax(0, 1fr) 44px; gap: 4px; align-items: center; border: 0; background: none;
  color: var(--cnnw-fg); min-height: 0; padding: 1px 2px; text-align: left; cursor: pointer; border-radius: 3px; }
.cnnw-explorer .cnnw-pred:hover { background: var(--cnnw-hover); }
.cnnw-explorer .cnnw-pred.selected { outline: 2px solid var(--cnnw-selected); }
.cnnw-pred-label { position: relative; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; padding: 1px 4px; z-index: 0; }
.cnnw-pred-fill { position: absolute; inset: 0 auto 0 0; background: var(--cnnw-bar-fill); z-index: -1; border-radius: 2px; }
.cnnw-pred-value { text-align: right; font-variant-numeric: tabular-nums; }
.cnnw-top1 { font-weight: 600; overflow-wrap: anywhere; }
/* the layer strip shows whole rows: every button is --cnnw-layer-h tall (line heights in px, so no font can change
   it), the strip --cnnw-layer-rows rows of them (border-box: rows, gaps, 2 x 2px padding, 2 x 1px border), and
   scrolling snaps to a row */
.cnnw-layers { --cnnw-layer-h: 34px; --cnnw-layer-rows: 3; display: flex; flex-wrap: wrap; align-content: flex-start; gap: 3px;
  max-height: calc(var(--cnnw-layer-rows) * (var(--cnnw-layer-h) + 3px) - 3px + 6px); overflow-y: auto;
  scroll-snap-type: y mandatory; scroll-padding-top: 2px;
  padding: 2px; border: 1px solid var(--cnnw-line); border-radius: 6px; margin-bottom: 10px; }
.cnnw-explorer .cnnw-layer { border: 1px solid var(--cnnw-border); background: var(--cnnw-surface); color: var(--cnnw-fg); border-radius: 4px;
  padding: 1px 5px; height: var(--cnnw-layer-h); min-height: 0; overflow: hidden; scroll-snap-align: start; cursor: pointer; text-align: left;
  line-height: 16px; white-space: nowrap; }
.cnnw-layer small { display: block; color: var(--cnnw-muted); font-size: 11px; line-height: 14px; }
.cnnw-explorer .cnnw-layer[data-kind="conv"] { border-left: 3px solid #4a7bd0; }
.cnnw-explorer .cnnw-layer[data-kind="block"] { border-left: 3px solid #2e9e6b; }
.cnnw-explorer .cnnw-layer[data-kind="activation"] { border-left: 3px solid #c9a227; }
.cnnw-explorer .cnnw-layer[data-kind="pool"], .cnnw-explorer .cnnw-layer[data-kind="linear"] { border-left: 3px solid #9b59b6; }
.cnnw-explorer .cnnw-layer.selected { background: var(--cnnw-strong-bg); color: var(--cnnw-strong-fg); border-color: var(--cnnw-strong-bg); }
.cnnw-explorer .cnnw-layer.selected small { color: var(--cnnw-strong-muted); }
.cnnw-fmap-wrap { position: relative; display: inline-block; max-width: 100%; vertical-align: top; }
.cnnw-fmap { cursor: crosshair; }
.cnnw-fmap-overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; image-rendering: auto; }
.cnnw-fmap-scroll { max-height: 440px; overflow-y: auto; }
.cnnw-hover { font-variant-numeric: tabular-nums; color: var(--cnnw-fg); min-width: 15em; }
.cnnw-embedding-hover { font-variant-numeric: tabular-nums; }
.cnnw-hover:empty::before, .cnnw-embedding-hover:empty::before { content: attr(data-placeholder); color: var(--cnnw-faint); }
.cnnw-explorer .cnnw-channel { width: 5em; }
.cnnw-tree-panel { position: relative; }
.cnnw-tree-head { display: flex; gap: 8px; align-items: center; margin-bottom: 6px; flex-wrap: wrap; }
.cnnw-tree-hint { color: var(--cnnw-muted); font-size: 12px; margin-left: auto; }
.cnnw-tree-children { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 6px; padding-left: 10px; border-left: 2px solid var(--cnnw-line); }
.cnnw-tree-children:empty { display: none; }
.cnnw-tree-node { border: 1px solid var(--cnnw-border); border-radius: 6px; padding: 5px; background: var(--cnnw-surface); cursor: pointer; }
.cnnw-tree-node:hover { border-color: var(--cnnw-accent); }
.cnnw-tree-node.expanded { flex-basis: 100%; background: var(--cnnw-accent-soft); border-color: var(--cnnw-accent-line); }
.cnnw-tree-card { display: flex; flex-direction: column; gap: 3px; width: 124px; }
.cnnw-tree-card canvas { width: 124px; height: 124px; border-radius: 3px; flex: none; image-rendering: auto; }
.cnnw-tree-card canvas.cnnw-tree-pending { background: repeating-linear-gradient(45deg, var(--cnnw-pending-a) 0 8px, var(--cnnw-pending-b) 8px 16px); }
.cnnw-tree-text { display: grid; font-size: 12px; min-width: 0; }
.cnnw-tree-label { font-weight: 600; overflow-wrap: anywhere; }
.cnnw-tree-score { color: var(--cnnw-muted); font-variant-numeric: tabular-nums; }
.cnnw-tree-preview { position: absolute; z-index: 5; pointer-events: none; background: var(--cnnw-bg); border: 1px solid var(--cnnw-accent-line);
  border-radius: 6px; padding: 6px; box-shadow: 0 4px 14px var(--cnnw-shadow); width: 254px; }
.cnnw-tree-preview canvas { width: 240px; height: 240px; image-rendering: auto; }
.cnnw-tabs { display: flex; flex-wrap: wrap; gap: 4px; border-bottom: 2px solid var(--cnnw-border); padding: 0 4px; }
.cnnw-explorer .cnnw-tab { border: 1px solid var(--cnnw-border); border-bottom: 0; background: var(--cnnw-surface-2); border-radius: 6px 6px 0 0;
  padding: 4px 12px; min-height: 0; cursor: pointer; color: var(--cnnw-fg); margin-bottom: -2px; }
.cnnw-explorer .cnnw-tab.selected { background: var(--cnnw-bg); border-color: var(--cnnw-accent-line); border-bottom: 2px solid var(--cnnw-bg); font-weight: 600; }
/* the "more…" menu of a tab bar kept to one row (presentation, tabs.js): it looks like a tab */
.cnnw-explorer .cnnw-tab-overflowed { display: none; }
.cnnw-explorer select.cnnw-tab-more { min-height: 0; max-width: 14em; line-height: inherit; field-sizing: content; } /* as wide as the shown entry */
.cnnw-tab-page > .cnnw-panel, .cnnw-tabbed > .cnnw-panel { border-top-left-radius: 0; border-top-right-radius: 0; border-top: 0; }
.cnnw-drop { outline: 3px dashed var(--cnnw-accent); outline-offset: -3px; }
.cnnw-legend { display: flex; gap: 6px; align-items: center; font-size: 12px; color: var(--cnnw-muted); margin-top: 4px; white-space: nowrap; }
.cnnw-legend canvas { width: 120px; min-width: 40px; flex: 0 1 120px; height: 10px; image-rendering: auto; }
.cnnw-legend-block { margin-top: 4px; }
.cnnw-legend-title { font-size: 12px; color: var(--cnnw-muted); }
.cnnw-legend-block .cnnw-legend { margin-top: 1px; }
.cnnw-sanity[data-fails="true"], .cnnw-trust-verdict[data-fails="true"] { color: var(--cnnw-err-fg); font-weight: 600; }
.cnnw-sanity[data-fails="false"], .cnnw-trust-verdict[data-fails="false"] { color: var(--cnnw-ok-fg); }
.cnnw-trust-method { margin-right: 10px; white-space: nowrap; font-size: 12px; }
.cnnw-trust-methods { display: inline-flex; flex-wrap: wrap; gap: 2px 0; }
.cnnw-trust-label { font-size: 12px; padding-right: 6px; }
.cnnw-trust-axis { font-size: 11px; color: var(--cnnw-muted); }
.cnnw-scan-message { color: var(--cnnw-busy-fg); background: var(--cnnw-busy-bg); border-radius: 6px; padding: 6px 8px; margin-bottom: 6px; overflow-wrap: anywhere; }
.cnnw-scan-message:empty { display: none; }
.cnnw-stale .cnnw-top-grids { opacity: 0.5; }
.cnnw-top-grids { display: flex; flex-wrap: wrap; gap: 10px 24px; }
.cnnw-top-side { min-width: 0; }
.cnnw-top-head { font-size: 12px; color: var(--cnnw-muted); margin-bottom: 3px; }
.cnnw-top-note { margin-top: 4px; color: var(--cnnw-fg); border-left: 3px solid var(--cnnw-accent-line); padding-left: 6px; }
.cnnw-top-grid { display: grid; gap: 6px; }
.cnnw-top-grid figure { margin: 0; cursor: pointer; }
.cnnw-top-cell { display: flex; align-items: center; justify-content: center; background: var(--cnnw-surface-2); border-radius: 3px; outline: 2px solid transparent; }
.cnnw-top-grid figure.hot .cnnw-top-cell { outline-color: #ff8c00; }
.cnnw-top-grid figcaption { font-size: 12px; color: var(--cnnw-fg); text-align: center; font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.cnnw-embedding-wrap { position: relative; display: inline-block; max-width: 100%; }
.cnnw-embedding { image-rendering: auto; border: 1px solid var(--cnnw-line); border-radius: 4px; }
.cnnw-label-legend { display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 12px; margin-top: 4px; }
.cnnw-label-chip { display: inline-flex; align-items: center; gap: 4px; }
.cnnw-label-chip i { width: 10px; height: 10px; border-radius: 2px; display: inline-block; }
/* dark theme: the other views' light-only colours (blocks appended after this sheet, inline styles) */
.cnnw-explorer[data-theme="dark"] .cnnw-figure-button { background: var(--cnnw-surface); color: var(--cnnw-muted); border-color: var(--cnnw-border); }
.cnnw-explorer[data-theme="dark"] .cnnw-figure-button:hover { color: var(--cnnw-fg); border-color: var(--cnnw-accent); }
.cnnw-explorer[data-theme="dark"] .cnnw-static-note { background: var(--cnnw-surface-2); color: var(--cnnw-muted); }
.cnnw-explorer[data-theme="dark"] .cnnw-viz canvas[style*="background"] { background: var(--cnnw-surface-2) !important; }
/* compact: one section at a time under the tab bar, each scrolling within what the host leaves */
.cnnw-explorer[data-layout="compact"] { padding: 6px; }
.cnnw-explorer[data-layout="compact"] .cnnw-bar { gap: 4px 10px; margin-bottom: 6px; }
.cnnw-explorer[data-layout="compact"] .cnnw-status { width: 9em; }
.cnnw-explorer[data-layout="compact"] .cnnw-layers { --cnnw-layer-rows: 2; margin-bottom: 6px; }
.cnnw-explorer[data-layout="compact"] .cnnw-row { margin-bottom: 0; }
.cnnw-explorer[data-layout="compact"] .cnnw-tab { padding: 3px 9px; }
.cnnw-explorer[data-layout="compact"] .cnnw-tabbed > .cnnw-panel, .cnnw-explorer[data-layout="compact"] .cnnw-tab-page > .cnnw-panel {
  max-height: var(--cnnw-section-max, none); overflow: auto; }
.cnnw-explorer[data-layout="compact"] .cnnw-fmap-scroll { max-height: none; }
/* presentation (projector): large text and pictures; the image beside one section at a time */
.cnnw-explorer[data-layout="presentation"] { font-size: 17px; max-width: 1400px; padding: 12px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-panel h3 { font-size: 19px; margin-bottom: 8px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-panel .cnnw-caption,
.cnnw-explorer[data-layout="presentation"] .cnnw-legend, .cnnw-explorer[data-layout="presentation"] .cnnw-tree-text,
.cnnw-explorer[data-layout="presentation"] .cnnw-tree-hint, .cnnw-explorer[data-layout="presentation"] .cnnw-top-head,
.cnnw-explorer[data-layout="presentation"] .cnnw-top-grid figcaption { font-size: 15px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-layer { line-height: 21px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-layer small { font-size: 13px; line-height: 16px; }
/* the fit to the screen (arrange.js) sets --cnnw-strip-rows (3 to 1), --cnnw-pinned-picture (the image) and
   --cnnw-picture (saliency, occlusion), each 448 px down to 224 px */
.cnnw-explorer[data-layout="presentation"] .cnnw-layers { --cnnw-layer-h: 41px; --cnnw-layer-rows: var(--cnnw-strip-rows, 3); margin-bottom: 8px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-bar { margin-bottom: 6px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-tab { padding: 6px 16px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-controls input[type=range] { width: 140px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-pred { grid-template-columns: minmax(0, 1fr) 62px; padding: 3px 4px; }
.cnnw-explorer[data-layout="presentation"] :is(.cnnw-image, .cnnw-saliency, .cnnw-occlusion) { width: min(100%, var(--cnnw-picture, 448px)); image-rendering: auto; }
.cnnw-explorer[data-layout="presentation"] .cnnw-image { width: min(100%, var(--cnnw-pinned-picture, 448px)); }
.cnnw-explorer[data-layout="presentation"] .cnnw-legend canvas { width: 200px; flex-basis: 200px; height: 14px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-tree-card { width: 176px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-tree-card canvas { width: 176px; height: 176px; }
/* the pinned image's column is as wide as its picture (+ the panel's padding and border), at most half the stage, and
   at least its heading on one line (a wrapped heading would take the room of a line of predictions) */
.cnnw-stage { display: grid; grid-template-columns: minmax(min-content, min(calc(var(--cnnw-pinned-picture, 448px) + 14px), calc(50% - 5px))) minmax(0, 1fr);
  gap: 10px; align-items: start; }
.cnnw-stage > .cnnw-panel { border-radius: 6px; }
.cnnw-stage > .cnnw-panel > h3 { white-space: nowrap; }
@media (max-width: 900px) { .cnnw-stage { grid-template-columns: minmax(0, 1fr); } }
`;
