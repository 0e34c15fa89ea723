// 256-entry RGB lookup tables. The bytes come from the same JSON file that Python's
// cnn_widgets.widgets.colormaps.lut() reads, so both sides colour identically.
import tables from "../../cnn_widgets/widgets/colormaps.json" with { type: "json" };

const cache = new Map();

export function colormapNames() {
  return Object.keys(tables);
}

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

/** Uint8Array(768): r, g, b for values 0..255. */
export function lut(name) {
  if (!(name in tables)) throw new Error(`unknown colormap ${name}; choose one of ${colormapNames().join(", ")}`);
  if (!cache.has(name)) cache.set(name, hexToBytes(tables[name]));
  return cache.get(name);
}
