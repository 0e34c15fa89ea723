// Pure pixel work (no DOM): tiles through a LUT, heat maps blended over an image.

/**
 * Draw C maps (uint8, [C, h, w] row-major) into an RGBA buffer laid out by `layout`.
 * Tile pixel (ty, tx) shows map value (floor(ty * h / tile), floor(tx * w / tile)) through lut.
 * Gaps get `background` ([r, g, b] opaque, or [r, g, b, a] with a 0-255: 0 lets the page show through).
 */
export function renderTiles(maps, channels, h, w, layout, lut, background = [255, 255, 255]) {
  const { width, height, tile, gap, cols } = layout;
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < rgba.length; i += 4) {
    rgba[i] = background[0]; rgba[i + 1] = background[1]; rgba[i + 2] = background[2]; rgba[i + 3] = background[3] ?? 255;
  }
  const sx = new Int32Array(tile), sy = new Int32Array(tile);
  for (let t = 0; t < tile; t++) { sx[t] = Math.floor((t * w) / tile); sy[t] = Math.floor((t * h) / tile); }
  const plane = h * w;
  for (let c = 0; c < channels; c++) {
    const x0 = gap + (c % cols) * (tile + gap);
    const y0 = gap + Math.floor(c / cols) * (tile + gap);
    const base = c * plane;
    for (let ty = 0; ty < tile; ty++) {
      const row = base + sy[ty] * w;
      let o = ((y0 + ty) * width + x0) * 4;
      for (let tx = 0; tx < tile; tx++, o += 4) {
        const v = maps[row + sx[tx]] * 3;
        rgba[o] = lut[v]; rgba[o + 1] = lut[v + 1]; rgba[o + 2] = lut[v + 2]; rgba[o + 3] = 255;
      }
    }
  }
  return rgba;
}

/** RGBA of one uint8 map [h, w] through lut, as one square tile of side max(h, w) (nearest-neighbour). */
export function mapRgba(map, h, w, lut) {
  const side = Math.max(h, w);
  return { rgba: renderTiles(map, 1, h, w, { cols: 1, tile: side, gap: 0, width: side, height: side }, lut), side };
}

/**
 * RGBA of an RGB image (uint8 [H, W, 3]) with a heat map (uint8 [hh, hw], nearest-neighbour
 * resampled) coloured by lut on top. Per-pixel alpha = alphaOf(value) * opacity.
 */
export function blendHeat(image, H, W, heat, hh, hw, lut, opacity, alphaOf = (v) => v / 255) {
  const out = new Uint8ClampedArray(H * W * 4);
  const alpha = new Float32Array(256);
  for (let v = 0; v < 256; v++) alpha[v] = Math.min(1, Math.max(0, alphaOf(v) * opacity));
  for (let y = 0; y < H; y++) {
    const hy = heat ? Math.floor((y * hh) / H) * hw : 0;
    for (let x = 0; x < W; x++) {
      const i = y * W + x, o = i * 4;
      const r = image ? image[i * 3] : 0, g = image ? image[i * 3 + 1] : 0, b = image ? image[i * 3 + 2] : 0;
      if (heat) {
        const v = heat[hy + Math.floor((x * hw) / W)];
        const a = alpha[v];
        out[o] = r + (lut[v * 3] - r) * a;
        out[o + 1] = g + (lut[v * 3 + 1] - g) * a;
        out[o + 2] = b + (lut[v * 3 + 2] - b) * a;
      } else {
        out[o] = r; out[o + 1] = g; out[o + 2] = b;
      }
      out[o + 3] = 255;
    }
  }
  return out;
}

/** RGBA of N colour tiles (uint8 [N, h, w, 3]) or signed tiles ([N, h, w] through lut). */
export function renderFilterTiles(tiles, n, h, w, rgb, layout, lut) {
  const { width, height, gap, cols, tileW, tileH } = layout;
  const rgba = new Uint8ClampedArray(width * height * 4).fill(255);
  for (let t = 0; t < n; t++) {
    const x0 = gap + (t % cols) * (tileW + gap), y0 = gap + Math.floor(t / cols) * (tileH + gap);
    for (let ty = 0; ty < tileH; ty++) {
      const my = Math.floor((ty * h) / tileH);
      for (let tx = 0; tx < tileW; tx++) {
        const mx = Math.floor((tx * w) / tileW);
        const o = ((y0 + ty) * width + x0 + tx) * 4;
        if (rgb) {
          const i = ((t * h + my) * w + mx) * 3;
          rgba[o] = tiles[i]; rgba[o + 1] = tiles[i + 1]; rgba[o + 2] = tiles[i + 2];
        } else {
          const v = tiles[(t * h + my) * w + mx] * 3;
          rgba[o] = lut[v]; rgba[o + 1] = lut[v + 1]; rgba[o + 2] = lut[v + 2];
        }
      }
    }
  }
  return rgba;
}

/** Layout for filter tiles of h x w (possibly not square): one scale for all, fits maxWidth. */
export function filterLayout(n, h, w, maxWidth, { maxHeight = 360, gap = 2, maxTile = 48 } = {}) {
  if (n === 1) {
    // one (possibly wide) matrix: as large as fits, below 1 px per cell only when it must
    const scale = Math.min((maxWidth - 2 * gap) / w, maxHeight / h, 8);
    const tileW = Math.max(1, Math.floor(w * scale)), tileH = Math.max(1, Math.floor(h * scale));
    return { cols: 1, rows: 1, gap, tileW, tileH, width: tileW + 2 * gap, height: tileH + 2 * gap };
  }
  for (let side = maxTile; side >= 4; side--) {
    const scale = side / Math.max(h, w);
    const tileW = Math.max(1, Math.round(w * scale)), tileH = Math.max(1, Math.round(h * scale));
    const cols = Math.max(1, Math.min(n, Math.floor((maxWidth - gap) / (tileW + gap))));
    const rows = Math.ceil(n / cols);
    const height = gap + rows * (tileH + gap);
    if (height <= maxHeight || side === 4) return { cols, rows, gap, tileW, tileH, width: gap + cols * (tileW + gap), height };
  }
}
