// Scoped styles (every selector starts with .cnnw-explorer). Sizes in px so the layout is the
// same at any notebook font size; 13px text stays readable on a projector at 100% zoom.
export const CSS = `
.cnnw-explorer { font: 13px/1.35 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330;
  max-width: 920px; box-sizing: border-box; padding: 8px; border: 1px solid #d5d9e0; border-radius: 8px; background: #fff; }
.cnnw-explorer *, .cnnw-explorer *::before, .cnnw-explorer *::after { box-sizing: border-box; }
.cnnw-explorer canvas { display: block; max-width: 100%; height: auto; image-rendering: pixelated; }
.cnnw-explorer select, .cnnw-explorer button, .cnnw-explorer input { font: inherit; }
.cnnw-explorer select { max-width: 100%; padding: 2px 4px; }
.cnnw-explorer [hidden] { display: none !important; }
.cnnw-bar { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; margin-bottom: 8px; }
.cnnw-bar label { display: inline-flex; gap: 6px; align-items: center; white-space: nowrap; min-width: 0; }
.cnnw-image-input { display: inline-flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; }
.cnnw-explain { flex: 1 1 200px; }
.cnnw-file { max-width: 210px; }
.cnnw-explain select { min-width: 0; max-width: 100%; flex: 0 1 auto; }
/* fixed width, one line: the bar does not reflow (or grow a line) when the status text changes */
.cnnw-status { margin-left: auto; flex: none; width: 11em; text-align: center; padding: 2px 8px; border-radius: 10px;
  background: #e8f3ea; color: #1f6b34; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.cnnw-explorer[data-status="busy"] .cnnw-status { background: #fff4d6; color: #7a5600; }
.cnnw-explorer[data-status="error"] .cnnw-status { background: #fde8e8; color: #9b1c1c; }
.cnnw-error { white-space: pre-wrap; color: #9b1c1c; background: #fde8e8; border-radius: 6px; padding: 6px 8px; margin-bottom: 8px; }
.cnnw-error:empty { display: none; }
.cnnw-row { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 10px; margin-bottom: 10px; }
.cnnw-panel { border: 1px solid #e3e6eb; border-radius: 6px; padding: 6px; min-width: 0; }
.cnnw-panel h3 { font-size: 13px; margin: 0 0 6px; font-weight: 600; }
.cnnw-panel .cnnw-caption { color: #596173; font-size: 12px; margin-top: 4px; overflow-wrap: anywhere; }
.cnnw-controls { display: flex; flex-wrap: wrap; gap: 4px 10px; align-items: center; margin-bottom: 6px; }
.cnnw-controls label { display: inline-flex; gap: 4px; align-items: center; }
.cnnw-controls input[type=range] { width: 90px; }
.cnnw-slider-value { min-width: 2.2em; display: inline-block; text-align: right; font-variant-numeric: tabular-nums; }
.cnnw-predictions { display: grid; gap: 2px; margin-top: 6px; }
.cnnw-pred { display: grid; grid-template-columns: minmax(0, 1fr) 44px; gap: 4px; align-items: center; border: 0; background: none;
  padding: 1px 2px; text-align: left; cursor: pointer; border-radius: 3px; }
.cnnw-pred:hover { background: #f1f4f8; }
.cnnw-pred.selected { outline: 2px solid #e07b00; }
.cnnw-pred-label { position: relative; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; padding: 1px 4px; z-index: 0; }
.cnnw-pred-fill { position: absolute; inset: 0 auto 0 0; background: #cfe0f5; z-index: -1; border-radius: 2px; }
.cnnw-pred-value { text-align: right; font-variant-numeric: tabular-nums; }
.cnnw-top1 { font-weight: 600; overflow-wrap: anywhere; }
.cnnw-layers { display: flex; flex-wrap: wrap; gap: 3px; max-height: 118px; overflow-y: auto; padding: 2px; border: 1px solid #e3e6eb; border-radius: 6px; margin-bottom: 10px; }
.cnnw-layer { border: 1px solid #cfd5de; background: #f7f8fa; border-radius: 4px; padding: 1px 5px; cursor: pointer; text-align: left; line-height: 1.2; }
.cnnw-layer small { display: block; color: #596173; font-size: 11px; }
.cnnw-layer[data-kind="conv"] { border-left: 3px solid #4a7bd0; }
.cnnw-layer[data-kind="block"] { border-left: 3px solid #2e9e6b; }
.cnnw-layer[data-kind="activation"] { border-left: 3px solid #c9a227; }
.cnnw-layer[data-kind="pool"], .cnnw-layer[data-kind="linear"] { border-left: 3px solid #9b59b6; }
.cnnw-layer.selected { background: #1d2330; color: #fff; border-color: #1d2330; }
.cnnw-layer.selected small { color: #d5d9e0; }
.cnnw-fmap-wrap { position: relative; display: inline-block; max-width: 100%; vertical-align: top; }
.cnnw-fmap { cursor: crosshair; }
.cnnw-fmap-overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; image-rendering: auto; }
.cnnw-fmap-scroll { max-height: 440px; overflow-y: auto; }
.cnnw-hover { font-variant-numeric: tabular-nums; color: #1d2330; min-width: 15em; }
.cnnw-embedding-hover { font-variant-numeric: tabular-nums; }
.cnnw-hover:empty::before, .cnnw-embedding-hover:empty::before { content: attr(data-placeholder); color: #8a91a0; }
.cnnw-channel { width: 5em; }
.cnnw-tree-panel { position: relative; }
.cnnw-tree-head { display: flex; gap: 8px; align-items: center; margin-bottom: 6px; flex-wrap: wrap; }
.cnnw-tree-hint { color: #596173; font-size: 12px; margin-left: auto; }
.cnnw-tree-children { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 6px; padding-left: 10px; border-left: 2px solid #e3e6eb; }
.cnnw-tree-children:empty { display: none; }
.cnnw-tree-node { border: 1px solid #d5d9e0; border-radius: 6px; padding: 5px; background: #fafbfc; cursor: pointer; }
.cnnw-tree-node:hover { border-color: #4a7bd0; }
.cnnw-tree-node.expanded { flex-basis: 100%; background: #f3f7fd; border-color: #9db8e5; }
.cnnw-tree-card { display: flex; flex-direction: column; gap: 3px; width: 124px; }
.cnnw-tree-card canvas { width: 124px; height: 124px; border-radius: 3px; flex: none; image-rendering: auto; }
.cnnw-tree-card canvas.cnnw-tree-pending { background: repeating-linear-gradient(45deg, #eceff3 0 8px, #f6f7f9 8px 16px); }
.cnnw-tree-text { display: grid; font-size: 12px; min-width: 0; }
.cnnw-tree-label { font-weight: 600; overflow-wrap: anywhere; }
.cnnw-tree-score { color: #596173; font-variant-numeric: tabular-nums; }
.cnnw-tree-preview { position: absolute; z-index: 5; pointer-events: none; background: #fff; border: 1px solid #9db8e5;
  border-radius: 6px; padding: 6px; box-shadow: 0 4px 14px rgba(29, 35, 48, 0.25); width: 254px; }
.cnnw-tree-preview canvas { width: 240px; height: 240px; image-rendering: auto; }
.cnnw-tabs { display: flex; flex-wrap: wrap; gap: 4px; border-bottom: 2px solid #d5d9e0; padding: 0 4px; }
.cnnw-tab { border: 1px solid #d5d9e0; border-bottom: 0; background: #f3f4f6; border-radius: 6px 6px 0 0; padding: 4px 12px;
  cursor: pointer; color: #1d2330; margin-bottom: -2px; }
.cnnw-tab.selected { background: #fff; border-color: #9db8e5; border-bottom: 2px solid #fff; font-weight: 600; }
.cnnw-tab-page > .cnnw-panel { border-top-left-radius: 0; border-top-right-radius: 0; border-top: 0; }
.cnnw-drop { outline: 3px dashed #4a7bd0; outline-offset: -3px; }
.cnnw-legend { display: flex; gap: 6px; align-items: center; font-size: 12px; color: #596173; margin-top: 4px; white-space: nowrap; }
.cnnw-legend canvas { width: 120px; min-width: 40px; flex: 0 1 120px; height: 10px; image-rendering: auto; }
.cnnw-legend-block { margin-top: 4px; }
.cnnw-legend-title { font-size: 12px; color: #596173; }
.cnnw-legend-block .cnnw-legend { margin-top: 1px; }
.cnnw-scan-message { color: #7a5600; background: #fff4d6; border-radius: 6px; padding: 6px 8px; margin-bottom: 6px; overflow-wrap: anywhere; }
.cnnw-scan-message:empty { display: none; }
.cnnw-stale .cnnw-top-grids { opacity: 0.5; }
.cnnw-top-grids { display: flex; flex-wrap: wrap; gap: 10px 24px; }
.cnnw-top-side { min-width: 0; }
.cnnw-top-head { font-size: 12px; color: #596173; margin-bottom: 3px; }
.cnnw-top-grid { display: grid; gap: 6px; }
.cnnw-top-grid figure { margin: 0; cursor: pointer; }
.cnnw-top-cell { display: flex; align-items: center; justify-content: center; background: #f3f4f6; border-radius: 3px; outline: 2px solid transparent; }
.cnnw-top-grid figure.hot .cnnw-top-cell { outline-color: #ff8c00; }
.cnnw-top-grid figcaption { font-size: 12px; color: #1d2330; text-align: center; font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.cnnw-embedding-wrap { position: relative; display: inline-block; max-width: 100%; }
.cnnw-embedding { image-rendering: auto; border: 1px solid #e3e6eb; border-radius: 4px; }
.cnnw-label-legend { display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 12px; margin-top: 4px; }
.cnnw-label-chip { display: inline-flex; align-items: center; gap: 4px; }
.cnnw-label-chip i { width: 10px; height: 10px; border-radius: 2px; display: inline-block; }
`;
