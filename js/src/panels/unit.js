// The "Inside a unit" tab (panels/unit.py, unit_view.py): how one number of a feature map is computed.
// Input map with the window outlined, beside the output map with the unit marked; per input channel the
// patch × the kernel slice = the products (diverging colours centred on zero, numbers printed when the
// kernel is small, every number on hover); the running sum channel by channel, + bias, then each step
// (batch norm, activation) to the value, which the view adds up itself and compares with the model's
// (data-total / data-value). Pooling: the window and its winner or sum ÷ divisor; linear: the top
// products and the rest; a sum or concatenation: its operands; the logit layer: softmax step by step.
// "Animate" slides the window over the input map and fills the output map position by position from the
// maps already here (requestAnimationFrame, no kernel), as CNN Explainer does.
import { decodeArray } from "../buffers.js";
import { lut } from "../colormaps.js";
import { h, listenBatched } from "../dom.js";
import { commit } from "../actions.js";
import { imageOf } from "../picture.js";
import { agreement, applySteps, cellNum, diverging, extentOf, num, positionsPerSecond, softmaxRows, stepFormula, stepName, unitSum, windowAt, windowValues } from "../unit_math.js";

const MAP_PX = 224; // css pixels of the input and output maps (presentation: larger, by CSS)
const RES = 2; // canvas pixels per css pixel of the maps (sharp outlines on a projector and on high-dpi screens)
const DOM_CELLS = 400; // windows up to this many cells are DOM grids (hover, printed numbers); larger ones a canvas
const SPEEDS = { slow: 24, normal: 9, fast: 3 }; // seconds one pass over the output map takes
const KIND_TEXT = { conv: "convolution", pool: "pooling", linear: "linear layer", combine: "combination" };

function slice(stack, i) {
  if (!stack) return null;
  const [, ...shape] = stack.shape;
  const n = shape.reduce((a, b) => a * b, 1);
  return { array: stack.array.subarray(i * n, (i + 1) * n), shape };
}

function rgbOf(table, index) {
  return index < 0 ? "transparent" : `rgb(${table[3 * index]},${table[3 * index + 1]},${table[3 * index + 2]})`;
}

/** A kh x kw grid of coloured cells (diverging, centred on zero); numbers printed when `printed`, on hover always. */
function grid(values, rows, cols, extent, { printed = false, title = "", hover, mark = null, padding = null, kind = "" } = {}) {
  const table = lut("coolwarm");
  if (rows * cols > DOM_CELLS) {
    const canvas = h("canvas", { class: "cnnw-unit-grid-canvas", width: cols, height: rows, "data-grid": kind, title });
    const rgba = new Uint8ClampedArray(rows * cols * 4);
    values.forEach((v, i) => { const c = diverging(v, extent); if (c >= 0) rgba.set([table[3 * c], table[3 * c + 1], table[3 * c + 2], 255], 4 * i); });
    canvas.getContext("2d").putImageData(new ImageData(rgba, cols, rows), 0, 0);
    canvas.addEventListener("mousemove", (e) => {
      const r = canvas.getBoundingClientRect();
      const y = Math.floor(((e.clientY - r.top) * rows) / r.height), x = Math.floor(((e.clientX - r.left) * cols) / r.width);
      if (y >= 0 && y < rows && x >= 0 && x < cols) hover(`${title} (${y}, ${x}): ${num(values[y * cols + x])}`);
    });
    return canvas;
  }
  const el = h("div", { class: `cnnw-unit-grid${printed ? " printed" : ""}`, "data-grid": kind, title,
    style: `grid-template-columns: repeat(${cols}, var(--cnnw-cell))` });
  for (let i = 0; i < rows * cols; i++) {
    const v = values[i], c = diverging(v, extent);
    const pad = padding && padding[Math.floor(i / cols)][i % cols];
    const cell = h("div", { class: `cnnw-unit-cell${pad || Number.isNaN(v) ? " pad" : ""}${mark === i ? " winner" : ""}`,
      style: `background:${rgbOf(table, c)};color:${c >= 0 && Math.abs(c - 128) > 70 ? "#fff" : "#111"}`,
      text: printed ? (Number.isNaN(v) || pad ? "pad" : cellNum(v)) : "" });
    cell.addEventListener("mouseenter", () => hover(`${title} (${Math.floor(i / cols)}, ${i % cols}): ${pad || Number.isNaN(v) ? "padding (0)" : num(v)}`));
    el.append(cell);
  }
  return el;
}

function mapCanvas(cls) {
  return h("canvas", { class: `cnnw-unit-map ${cls}`, width: MAP_PX * RES, height: MAP_PX * RES });
}

/** An offscreen canvas of a map: the image itself (RGB) or a signed map through the diverging colours. */
function mapPicture(map, Hh, Ww, image = null) {
  const off = document.createElement("canvas");
  off.width = Ww; off.height = Hh;
  const rgba = new Uint8ClampedArray(Hh * Ww * 4);
  if (image) {
    for (let i = 0; i < Hh * Ww; i++) rgba.set([image[3 * i], image[3 * i + 1], image[3 * i + 2], 255], 4 * i);
  } else {
    const table = lut("coolwarm"), extent = extentOf(map);
    for (let i = 0; i < Hh * Ww; i++) { const c = diverging(map[i], extent); rgba.set([table[3 * c], table[3 * c + 1], table[3 * c + 2], 255], 4 * i); }
  }
  off.getContext("2d").putImageData(new ImageData(rgba, Ww, Hh), 0, 0);
  return off;
}

function mount(model) {
  const title = h("h3", { text: "Inside a unit" });
  const caption = h("div", { class: "cnnw-caption cnnw-unit-what" });
  const hover = h("span", { class: "cnnw-unit-hover", "data-placeholder": "hover a cell for its number" });
  const animate = h("button", { type: "button", class: "cnnw-unit-animate", "data-client": "", title: "slide the window over the input map and fill the output map, position by position (in the browser)", text: "▶ animate" });
  const speed = h("select", { class: "cnnw-unit-speed", "data-client": "", title: "how fast the animation goes" },
    ...Object.keys(SPEEDS).map((s) => h("option", { value: s, text: s, selected: s === "normal" })));
  const animText = h("span", { class: "cnnw-unit-anim-text" });
  const inputCanvas = mapCanvas("cnnw-unit-input"), outputCanvas = mapCanvas("cnnw-unit-output");
  const inputCaption = h("figcaption"), outputCaption = h("figcaption");
  const maps = h("div", { class: "cnnw-unit-maps" }, h("figure", {}, inputCanvas, inputCaption), h("div", { class: "cnnw-unit-arrow", text: "→" }),
    h("figure", {}, outputCanvas, outputCaption));
  const body = h("div", { class: "cnnw-unit-body" });
  const empty = h("div", { class: "cnnw-caption", text: "double-click a position on a feature map (or click the image) to see how its number is computed" });
  const el = h("div", { class: "cnnw-panel cnnw-unit", "data-version": "0" }, title, caption,
    h("div", { class: "cnnw-controls" }, animate, speed, animText, hover), maps, body, empty);
  const say = (text) => { hover.textContent = text; };

  let view = null; // {info, input, output, slide, ...} of the drawn unit
  let anim = null; // the running animation's state

  function decode() {
    const info = model.get("unit_info") || {};
    if (!info.kind) return null;
    const input = decodeArray(model.get("unit_input")), output = decodeArray(model.get("unit_output"));
    return { info, patch: decodeArray(model.get("unit_patch")), kernel: decodeArray(model.get("unit_kernel")),
      products: decodeArray(model.get("unit_products")), input, output, active: 0 };
  }

  // ------------------------------------------------------------------ the maps (static frame and animation frames)
  function prepareMaps() {
    const { info, input, output } = view;
    maps.hidden = !(input && output && info.position);
    if (maps.hidden) return;
    const [, Hh, Ww] = input.shape, [Ho, Wo] = output.shape;
    const image = info.input_is_image ? imageOf(model) : null;
    const useImage = image && image.H === Hh && image.W === Ww;
    view.inPicture = mapPicture(slice(input, view.active).array, Hh, Ww, useImage ? image.pixels : null);
    view.outRgba = new Uint8ClampedArray(Ho * Wo * 4);
    const table = lut("coolwarm"), extent = extentOf(output.array);
    view.outColours = output.array.map((v) => diverging(v, extent));
    view.outFull = new Uint8ClampedArray(Ho * Wo * 4);
    view.outColours.forEach((c, i) => view.outFull.set([table[3 * c], table[3 * c + 1], table[3 * c + 2], 255], 4 * i));
    view.outPicture = document.createElement("canvas");
    view.outPicture.width = Wo; view.outPicture.height = Ho;
    view.geometry = { Hh, Ww, Ho, Wo };
    const from = info.input_from && info.input_from !== "input" ? ` of ${info.input_from}` : "";
    const what = info.kind === "pool" ? `channel ${info.channel}${from || " before pooling"}` : useImage ? "the image"
      : `channel ${info.conv ? info.conv.channels[view.active] : ""}${from || " of the layer's input"}`;
    inputCaption.textContent = `input: ${what} (${Hh}×${Ww})`;
    outputCaption.textContent = `output: ${info.module}[${info.channel}] (${Ho}×${Wo})`;
  }

  function drawFrame(oy, ox, revealed) {
    const { info, geometry: g } = view;
    // output: the full map, or the first `revealed` positions (row by row) while animating
    const out = view.outPicture.getContext("2d");
    if (revealed == null) out.putImageData(new ImageData(view.outFull, g.Wo, g.Ho), 0, 0);
    else {
      const rgba = view.outRgba;
      rgba.fill(0);
      rgba.set(view.outFull.subarray(0, revealed * 4));
      out.putImageData(new ImageData(rgba, g.Wo, g.Ho), 0, 0);
    }
    for (const [canvas, picture, Hh, Ww] of [[inputCanvas, view.inPicture, g.Hh, g.Ww], [outputCanvas, view.outPicture, g.Ho, g.Wo]]) {
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.fillStyle = "#bfc5ce";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      const s = canvas.width / Math.max(Hh, Ww);
      ctx.drawImage(picture, 0, 0, Ww * s, Hh * s);
      canvas.dataset.scale = String(s);
    }
    const sIn = inputCanvas.width / Math.max(g.Hh, g.Ww), sOut = outputCanvas.width / Math.max(g.Ho, g.Wo);
    const w = info.slide ? windowAt(info.slide, oy, ox, g.Hh, g.Ww, g.Ho, g.Wo) : null;
    const box = (ctx, x, y, wd, ht, colour, width) => {
      ctx.strokeStyle = colour; ctx.lineWidth = width * RES; ctx.strokeRect(x, y, wd, ht);
      if (Math.max(wd, ht) < 14 * RES) { // a window of a few pixels on a large map: a ring around it too
        ctx.beginPath(); ctx.arc(x + wd / 2, y + ht / 2, 14 * RES, 0, 2 * Math.PI); ctx.stroke();
      }
    };
    const ictx = inputCanvas.getContext("2d"), octx = outputCanvas.getContext("2d");
    if (w) {
      box(ictx, w.x0 * sIn, w.y0 * sIn, w.w * sIn, w.h * sIn, "#000", 4);
      box(ictx, w.x0 * sIn, w.y0 * sIn, w.w * sIn, w.h * sIn, "#ffb000", 2);
      inputCanvas.dataset.window = `${w.y0},${w.x0},${w.h},${w.w}`;
    }
    box(octx, ox * sOut, oy * sOut, sOut, sOut, "#000", 4);
    box(octx, ox * sOut, oy * sOut, sOut, sOut, "#ffb000", 2);
  }

  function drawMaps() {
    if (maps.hidden || !view.geometry) return;
    const [y, x] = view.info.position;
    drawFrame(y, x, null);
  }

  // ------------------------------------------------------------------ the arithmetic
  function drawConv(info, sums) {
    const c = info.conv, [kh, kw] = c.kernel;
    const exP = extentOf(view.patch.array), exK = extentOf(view.kernel.array), exX = extentOf(view.products.array);
    const live = view.live = []; // the rows the animation rewrites with each position's numbers (DOM grids only)
    const rows = c.channels.map((channel, i) => {
      const term = sums.rows[i];
      const g = (stack, extent, name) => grid(slice(stack, i).array, kh, kw, extent, { printed: c.printed, title: `${name} of channel ${channel}`, hover: say, padding: name === "input" ? c.padding : null, kind: name });
      const row = h("div", { class: "cnnw-unit-row", "data-channel": String(channel) },
        h("div", { class: "cnnw-unit-label" }, h("b", { text: `channel ${channel}` })),
        g(view.patch, exP, "input"), h("span", { class: "cnnw-unit-op", text: "×" }), g(view.kernel, exK, "kernel"),
        h("span", { class: "cnnw-unit-op", text: "=" }), g(view.products, exX, "products"),
        h("span", { class: "cnnw-unit-op", text: "Σ" }), h("span", { class: "cnnw-unit-num", text: num(term.add) }),
        h("span", { class: "cnnw-unit-running", text: `running sum ${num(term.running)}` }));
      const [input, , products] = row.querySelectorAll(".cnnw-unit-grid");
      if (input && products) live.push({ i, input, products, sum: row.querySelector(".cnnw-unit-num"), running: row.querySelector(".cnnw-unit-running"), exP, exX });
      row.addEventListener("click", () => { if (view.active !== i && !info.input_is_image) { view.active = i; prepareMaps(); drawMaps(); } });
      return row;
    });
    const tail = sums.rows.slice(c.channels.length).map((term) => h("div", { class: "cnnw-unit-row cnnw-unit-extra", "data-term": term.bias ? "bias" : "other" },
      h("div", { class: "cnnw-unit-label" }, h("b", { text: term.bias ? "+ bias" : `+ ${term.label}: sum` })),
      h("span", { class: "cnnw-unit-num", text: num(term.add) }), h("span", { class: "cnnw-unit-running", text: `running sum ${num(term.running)}` })));
    const legend = h("div", { class: "cnnw-caption", text: `${c.count} input channel${c.count === 1 ? "" : "s"} in this unit's group` +
      (c.other ? ` · the ${c.channels.length} with the largest |sum| shown, ${c.other.count} others as one sum` : "") +
      ` · kernel ${kh}×${kw}, stride ${c.stride.join("×")}, padding ${c.pad.join("×")}${c.dilation.some((d) => d > 1) ? `, dilation ${c.dilation.join("×")}` : ""}` +
      `${c.groups > 1 ? `, ${c.groups} groups${c.count === 1 ? " (depthwise)" : ""}` : ""} · blue < 0 < red` });
    return [legend, ...rows, ...tail, resultLine(`= ${view.info.module} output (pre-activation)`, sums.source)];
  }

  function drawPool(info, sums) {
    const p = info.pool, [kh, kw] = view.patch.shape.slice(1);
    const values = view.patch.array, mark = p.winner ? p.winner[0] * kw + (p.winner[1] ?? 0) : null;
    const g = grid(values, kh, kw, extentOf(values), { printed: kh * kw <= 25, title: "window", hover: say, mark, kind: "window" });
    const finite = [...values].filter((v) => !Number.isNaN(v));
    const text = p.op === "max" ? `max of ${finite.length} numbers = ${num(sums.source)}` :
      `sum ${num(finite.reduce((a, b) => a + b, 0))} ÷ ${num(p.divisor)} = ${num(sums.source)}`;
    return [h("div", { class: "cnnw-caption", text: `${p.op} pooling over a ${kh}×${kw} window${p.op === "max" ? " · the winner outlined" : ""}` }),
      h("div", { class: "cnnw-unit-row" }, g, h("span", { class: "cnnw-unit-op", text: "→" }), h("span", { class: "cnnw-unit-num", text })),
      resultLine(`= ${view.info.module} output`, sums.source)];
  }

  function drawLinear(info, sums) {
    const l = info.linear;
    const table = h("table", { class: "cnnw-unit-table" }, h("tr", {}, ...["input", "value", "× weight", "= product", "running sum"].map((t) => h("th", { text: t }))),
      ...sums.rows.map((r) => r.index != null
        ? h("tr", {}, h("td", { text: String(r.input) }), h("td", { text: num(l.values[r.index]) }), h("td", { text: num(l.weights[r.index]) }), h("td", { text: num(r.add) }), h("td", { text: num(r.running) }))
        : h("tr", { class: "cnnw-unit-extra" }, h("td", { text: r.bias ? "+ bias" : `+ ${r.label}` }), h("td"), h("td"), h("td", { text: num(r.add) }), h("td", { text: num(r.running) }))));
    return [h("div", { class: "cnnw-caption", text: `the ${l.inputs.length} largest products of ${l.inputs.length + l.rest_count} inputs, the rest as one sum` }), table,
      resultLine(`= ${view.info.module} output`, sums.source)];
  }

  function drawCombine(info, sums) {
    const c = info.combine;
    const sign = { add: " + ", subtract: " − ", multiply: " × ", divide: " ÷ " }[c.op];
    const parts = c.operands.map((v, i) => `${num(v)} (from ${c.sources[i]})`);
    const text = c.op === "concat" ? `channel ${c.channel} of input ${c.part + 1} of ${c.parts} joined: ${parts[0]}` : parts.join(sign);
    return [h("div", { class: "cnnw-caption", text: c.op === "add" ? "a residual addition: the block's output plus what skipped it" : `a ${c.op}` }),
      h("div", { class: "cnnw-unit-row cnnw-unit-combine" }, h("span", { class: "cnnw-unit-num", text })), resultLine(`= ${view.info.module} output`, sums.source)];
  }

  function stepLines(entries, muted = false) {
    return entries.map(({ step, input, output }) => h("div", { class: `cnnw-unit-step${muted ? " then" : ""}`, "data-step": step.name },
      h("span", { class: "cnnw-unit-label", text: `${stepName(step)} (${step.module})` }),
      h("span", { class: "cnnw-unit-num", text: `${num(input)} ${stepFormula(step).startsWith("×") ? stepFormula(step) : `→ ${stepFormula(step)}`} = ${num(output)}` })));
  }

  function resultLine(text, value, cls = "") {
    return h("div", { class: `cnnw-unit-result ${cls}` }, h("span", { text }), h("b", { class: "cnnw-unit-num", text: num(value) }));
  }

  function drawSoftmax(info) {
    const sm = softmaxRows(info.softmax);
    const table = h("table", { class: "cnnw-unit-table cnnw-unit-softmax", "data-stage": "3" },
      h("tr", {}, ...["class", "logit", "− max", "exp(·)", "÷ Σ = probability"].map((t, i) => h("th", { text: t, "data-col": String(i) }))),
      ...sm.rows.map((r) => h("tr", { class: r.index === info.channel ? "selected" : "" }, h("td", { text: r.label === String(r.index) ? r.label : `${r.label} (${r.index})`, "data-col": "0" }),
        h("td", { text: num(r.logit), "data-col": "1" }), h("td", { text: num(r.shifted), "data-col": "2" }), h("td", { text: num(r.exp), "data-col": "3" }),
        h("td", { text: `${num(r.probability)} (${(100 * r.probability).toFixed(1)}%)`, "data-col": "4" }))));
    return [h("h4", { class: "cnnw-unit-title", text: "Softmax: logits → probabilities" }),
      h("div", { class: "cnnw-caption", text: `exp(logit − ${num(info.softmax.shift)}) (the largest logit, subtracted so exp stays finite), summed over all classes: Σ = ${Number(sm.sum.toPrecision(7))} (the classes not shown add ${num(sm.others)}), then each ÷ Σ` }),
      table];
  }

  function draw() {
    stop();
    body.classList.remove("cnnw-unit-live");
    view = decode();
    empty.hidden = !!view;
    for (const part of [maps, body, animate.parentElement]) part.hidden = !view;
    if (!view) { title.textContent = "Inside a unit"; body.replaceChildren(); return; }
    const { info } = view;
    const sums = unitSum(info, view.patch ? view.patch.array : null);
    const where = info.position ? ` at (y ${info.position[0]}, x ${info.position[1]})` : "";
    title.textContent = `Inside a unit: ${info.layer}[${info.channel}]${where}`;
    caption.textContent = `computed by ${info.module} (a ${KIND_TEXT[info.kind] || info.kind})` +
      (info.steps.length ? `, then ${info.steps.map(stepName).join(", ")}` : "") +
      ` · the model's number: ${num(info.value)}`;
    const parts = info.kind === "conv" ? drawConv(info, sums) : info.kind === "pool" ? drawPool(info, sums)
      : info.kind === "linear" ? drawLinear(info, sums) : drawCombine(info, sums);
    const off = agreement(sums.total, info.value, Math.abs(info.total));
    const final = h("div", { class: "cnnw-unit-final" }, h("span", { text: `= ${info.layer}[${info.channel}]${where}` }),
      h("b", { class: "cnnw-unit-num cnnw-unit-total", text: num(sums.total) }),
      h("span", { class: "cnnw-unit-check", "data-ok": String(off < 1e-5), text: off < 1e-5 ? `✓ the model's number (${num(info.value)})` : `≠ the model's ${num(info.value)}` }));
    const then = info.then && info.then.length ? [h("div", { class: "cnnw-caption", text: "then the model applies, before the next layer:" }),
      ...stepLines(applySteps(info.then, info.value), true)] : [];
    body.replaceChildren(...parts, ...stepLines(sums.steps), final, ...then, ...(info.softmax ? drawSoftmax(info) : []));
    Object.assign(el.dataset, { kind: info.kind, layer: info.layer, channel: String(info.channel), position: info.position ? info.position.join(",") : "",
      total: String(sums.total), value: String(info.value), animating: "false" });
    prepareMaps();
    drawMaps();
    animate.hidden = !(info.slide && !maps.hidden) && !info.softmax; // a window to slide (over the maps shown), or a softmax to step through
    speed.hidden = animate.hidden;
    el.dataset.version = String(Number(el.dataset.version) + 1);
  }

  // ------------------------------------------------------------------ animation (JS only)
  function paintCell(cell, v, extent, printed) {
    const c = diverging(v, extent), table = lut("coolwarm");
    cell.style.background = rgbOf(table, c);
    cell.style.color = c >= 0 && Math.abs(c - 128) > 70 ? "#fff" : "#111";
    cell.classList.toggle("pad", Number.isNaN(v));
    if (printed) cell.textContent = cellNum(v);
  }
  /** The shown channels' windows, products and sums at output position (oy, ox), from the maps already here. */
  function showAt(oy, ox) {
    const { info, input, kernel, live } = view;
    if (info.kind !== "conv" || !live || !live.length) return;
    const g = view.geometry, [kh, kw] = info.conv.kernel, printed = info.conv.printed;
    const w = windowAt(info.slide, oy, ox, g.Hh, g.Ww, g.Ho, g.Wo);
    let running = 0;
    for (const row of live) {
      const values = windowValues(slice(input, row.i).array, g.Hh, g.Ww, w, kh, kw), k = slice(kernel, row.i).array;
      let sum = 0;
      for (let j = 0; j < kh * kw; j++) {
        const product = Number.isNaN(values[j]) ? 0 : values[j] * k[j];
        sum += product;
        paintCell(row.input.children[j], values[j], row.exP, printed);
        paintCell(row.products.children[j], product, row.exX, printed);
      }
      running += sum;
      row.sum.textContent = num(sum);
      row.running.textContent = `running sum ${num(running)}`;
    }
    body.classList.add("cnnw-unit-live");
    anim.touched = true;
  }

  function frame(now) {
    if (!anim) return;
    if (anim.softmax) {
      const stage = Math.min(4, 1 + Math.floor((now - anim.start) / 1200));
      anim.table.dataset.stage = String(stage);
      anim.frames++;
      if (stage >= 4) { finish(); return; }
      anim.raf = requestAnimationFrame(frame);
      return;
    }
    const { Ho, Wo } = view.geometry, count = Ho * Wo;
    const revealed = Math.min(count, Math.floor(((now - anim.start) / 1000) * anim.rate) + 1);
    const p = revealed - 1;
    drawFrame(Math.floor(p / Wo), p % Wo, revealed);
    showAt(Math.floor(p / Wo), p % Wo);
    anim.frames++;
    const value = view.output.array[p];
    animText.textContent = `position (${Math.floor(p / Wo)}, ${p % Wo}) = ${num(value)} · ${revealed}/${count}`;
    el.dataset.animPosition = String(p);
    if (revealed >= count) { finish(); return; }
    anim.raf = requestAnimationFrame(frame);
  }
  function finish() {
    const seconds = (performance.now() - anim.start) / 1000;
    el.dataset.fps = (anim.frames / Math.max(seconds, 1e-3)).toFixed(1);
    el.dataset.frames = String(anim.frames);
    const touched = anim.touched;
    anim = null;
    animText.textContent = "";
    el.dataset.animating = "false";
    animate.textContent = "▶ animate";
    if (touched) draw(); // the unit's own numbers again
    else drawMaps();
  }
  function start() {
    if (!view || animate.hidden) return;
    if (view.info.softmax && !(view.info.slide && !maps.hidden)) {
      const table = body.querySelector(".cnnw-unit-softmax");
      if (!table) return;
      table.dataset.stage = "1";
      anim = { softmax: true, table, start: performance.now(), frames: 0 };
    } else {
      const { Ho, Wo } = view.geometry;
      anim = { start: performance.now(), frames: 0, rate: positionsPerSecond(Ho * Wo, SPEEDS[speed.value] || SPEEDS.normal) };
    }
    el.dataset.animating = "true";
    animate.textContent = "■ stop";
    anim.raf = requestAnimationFrame(frame);
  }
  function stop() {
    if (!anim) return;
    cancelAnimationFrame(anim.raf);
    if (anim.softmax) anim.table.dataset.stage = "3";
    finish();
  }
  animate.addEventListener("click", () => (anim ? stop() : start()));

  // the maps: their numbers on hover; a click on the output map looks inside the unit there (the kernel computes it)
  function mapPosition(event, canvas, Hh, Ww) {
    const r = canvas.getBoundingClientRect(), s = r.width / Math.max(Hh, Ww);
    const y = Math.floor((event.clientY - r.top) / s), x = Math.floor((event.clientX - r.left) / s);
    return y >= 0 && y < Hh && x >= 0 && x < Ww ? [y, x] : null;
  }
  inputCanvas.addEventListener("mousemove", (event) => {
    if (!view || !view.geometry) return;
    const p = mapPosition(event, inputCanvas, view.geometry.Hh, view.geometry.Ww);
    if (p) say(`input (${p[0]}, ${p[1]}): ${num(slice(view.input, view.active).array[p[0] * view.geometry.Ww + p[1]])}`);
  });
  outputCanvas.addEventListener("mousemove", (event) => {
    if (!view || !view.geometry) return;
    const p = mapPosition(event, outputCanvas, view.geometry.Ho, view.geometry.Wo);
    if (p) say(`output (${p[0]}, ${p[1]}): ${num(view.output.array[p[0] * view.geometry.Wo + p[1]])} · click to look inside it`);
  });
  outputCanvas.addEventListener("click", (event) => {
    if (!view || !view.geometry || anim) return;
    const p = mapPosition(event, outputCanvas, view.geometry.Ho, view.geometry.Wo);
    if (p && model.get("layer") === view.info.layer) commit(model, { unit_position: p });
  });

  const off = listenBatched(model, ["unit_info", "unit_patch", "unit_kernel", "unit_products", "unit_input", "unit_output"], draw);
  const offImage = listenBatched(model, ["image_data"], () => { if (view && view.info.input_is_image) { prepareMaps(); drawMaps(); } });
  draw();
  return { el, cleanup() { stop(); off(); offImage(); } };
}

export const UNIT_CSS = `
.cnnw-unit { --cnnw-cell: 32px; }
.cnnw-explorer canvas.cnnw-image { cursor: crosshair; }
.cnnw-unit-maps { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin: 4px 0 8px; }
.cnnw-unit-maps figure { margin: 0; }
.cnnw-unit-maps figcaption { font-size: 12px; color: var(--cnnw-muted); text-align: center; }
.cnnw-explorer canvas.cnnw-unit-map { width: ${MAP_PX}px; height: ${MAP_PX}px; border-radius: 4px; image-rendering: auto; }
.cnnw-explorer canvas.cnnw-unit-output { cursor: crosshair; }
.cnnw-unit-arrow { font-size: 22px; color: var(--cnnw-muted); }
.cnnw-unit-body { display: grid; gap: 6px; }
.cnnw-unit-row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; padding: 3px 4px; border-radius: 4px; }
.cnnw-unit-row[data-channel] { cursor: pointer; }
.cnnw-unit-row[data-channel]:hover { background: var(--cnnw-hover); }
.cnnw-unit-label { min-width: 8.5em; font-variant-numeric: tabular-nums; }
.cnnw-unit-grid { display: grid; gap: 1px; background: var(--cnnw-line); border: 1px solid var(--cnnw-line); }
.cnnw-unit-cell { width: var(--cnnw-cell); height: var(--cnnw-cell); font-size: 11px; line-height: var(--cnnw-cell); text-align: center; overflow: hidden;
  font-variant-numeric: tabular-nums; letter-spacing: -0.3px; }
.cnnw-unit-grid:not(.printed) { --cnnw-cell: 12px; }
.cnnw-unit-cell.pad { background: repeating-linear-gradient(45deg, var(--cnnw-pending-a) 0 4px, var(--cnnw-pending-b) 4px 8px) !important; color: var(--cnnw-faint) !important; }
.cnnw-unit-cell.winner { outline: 3px solid #ffb000; outline-offset: -3px; font-weight: 700; }
.cnnw-explorer canvas.cnnw-unit-grid-canvas { width: 160px; height: 160px; }
.cnnw-unit-op { font-size: 18px; color: var(--cnnw-muted); }
.cnnw-unit-num { font-variant-numeric: tabular-nums; }
.cnnw-unit-running { color: var(--cnnw-muted); font-size: 12px; font-variant-numeric: tabular-nums; margin-left: auto; }
.cnnw-unit-extra { border-top: 1px dashed var(--cnnw-line); }
.cnnw-unit-result, .cnnw-unit-final { display: flex; gap: 10px; align-items: baseline; padding: 3px 4px; border-top: 1px solid var(--cnnw-line); }
.cnnw-unit-final { font-size: 15px; border-top: 2px solid var(--cnnw-fg); }
.cnnw-unit-check[data-ok="true"] { color: var(--cnnw-ok-fg); }
.cnnw-unit-check[data-ok="false"] { color: var(--cnnw-err-fg); font-weight: 600; }
.cnnw-unit-step { display: flex; gap: 10px; padding: 2px 4px; }
.cnnw-unit-step.then { color: var(--cnnw-muted); }
.cnnw-unit-table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.cnnw-unit-table th, .cnnw-unit-table td { padding: 2px 8px; text-align: right; border-bottom: 1px solid var(--cnnw-line); }
.cnnw-unit-table th:first-child, .cnnw-unit-table td:first-child { text-align: left; }
.cnnw-unit-table tr.selected td { font-weight: 700; }
.cnnw-unit-softmax[data-stage="1"] [data-col="3"], .cnnw-unit-softmax[data-stage="1"] [data-col="4"],
.cnnw-unit-softmax[data-stage="2"] [data-col="4"] { visibility: hidden; }
.cnnw-unit-title { margin: 10px 0 2px; font-size: 13px; }
/* while the window slides: the shown channels follow it; what holds only at the unit (other channels, the total) fades */
.cnnw-unit-live > :not(.cnnw-unit-row[data-channel]):not(.cnnw-caption) { opacity: 0.3; }
.cnnw-unit-hover { font-variant-numeric: tabular-nums; min-width: 15em; }
.cnnw-unit-hover:empty::before { content: attr(data-placeholder); color: var(--cnnw-faint); }
.cnnw-unit-anim-text { font-variant-numeric: tabular-nums; color: var(--cnnw-muted); min-width: 14em; }
.cnnw-explorer[data-layout="presentation"] .cnnw-unit { --cnnw-cell: 52px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-unit-cell { font-size: 16px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-unit-grid:not(.printed) { --cnnw-cell: 18px; }
.cnnw-explorer[data-layout="presentation"] canvas.cnnw-unit-map { width: 320px; height: 320px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-unit-final { font-size: 22px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-unit-maps figcaption, .cnnw-explorer[data-layout="presentation"] .cnnw-unit-running { font-size: 15px; }
.cnnw-explorer[data-layout="presentation"] .cnnw-unit-title { font-size: 18px; }
`;

export default { name: "unit", place: "tab", mount };
