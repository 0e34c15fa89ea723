// The arithmetic the "Inside a unit" view draws (panels/unit.js), with no DOM: the running sum of the
// parts the kernel sent (panels/unit.py), the per-number steps after it, where each window of a
// convolution or pooling lies on its input map (for the animation), and the softmax rows.
// Everything here adds up what is shown, in doubles, so the view's total can be compared with the
// model's own number.

/** A step after the source applied in the browser: batch norm as its scale and shift, known activations by
 * their formula; an activation this file does not know keeps the model's output (computed: false). */
export function applyStep(step, x) {
  const relu6 = (v) => Math.min(6, Math.max(0, v));
  const sigmoid = (v) => 1 / (1 + Math.exp(-v));
  switch (step.name) {
    case "batch_norm": return step.scale == null ? { output: step.output, computed: false } : { output: x * step.scale + step.shift, computed: true };
    case "relu": return { output: Math.max(0, x), computed: true };
    case "relu6": return { output: relu6(x), computed: true };
    case "hardtanh": return step.bounds ? { output: Math.min(step.bounds[1], Math.max(step.bounds[0], x)), computed: true } : { output: step.output, computed: false };
    case "sigmoid": return { output: sigmoid(x), computed: true };
    case "tanh": return { output: Math.tanh(x), computed: true };
    case "silu": return { output: x * sigmoid(x), computed: true };
    case "hardswish": return { output: (x * relu6(x + 3)) / 6, computed: true };
    case "hardsigmoid": return { output: relu6(x + 3) / 6, computed: true };
    default: return { output: step.output, computed: false };
  }
}

/** A step's name as a reader knows it: "batch norm", "ReLU6" (PyTorch's hardtanh between 0 and 6), ... */
export function stepName(step) {
  if (step.name === "batch_norm") return "batch norm";
  if (step.name === "hardtanh" && step.bounds && step.bounds[0] === 0 && step.bounds[1] === 6) return "ReLU6";
  return { relu: "ReLU", relu6: "ReLU6", silu: "SiLU", gelu: "GELU", hardswish: "hardswish" }[step.name] || step.name;
}

/** How a step is written: "× 0.84 + 0.12", "max(0, x)", ... */
export function stepFormula(step) {
  switch (step.name) {
    case "batch_norm": return step.scale == null ? "batch norm" : `× ${num(step.scale)} ${step.shift < 0 ? "−" : "+"} ${num(Math.abs(step.shift))}`;
    case "relu": return "max(0, x)";
    case "relu6": return "min(6, max(0, x))";
    case "hardtanh": return step.bounds ? `min(${num(step.bounds[1])}, max(${num(step.bounds[0])}, x))` : "hardtanh(x)";
    default: return `${step.name}(x)`;
  }
}

/** A number as the view prints it: 4 significant digits, no exponent for ordinary sizes. */
export function num(x) {
  if (x == null || Number.isNaN(x)) return "—";
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a === 0) return "0";
  if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
  return Number(x.toPrecision(4)).toString();
}

/** A number short enough for a grid cell: 2 decimals (3 significant digits from 10 up); "≈0" below 0.005. */
export function cellNum(x) {
  if (Number.isNaN(x)) return "pad";
  const a = Math.abs(x);
  if (a === 0) return "0";
  if (a < 0.005) return "≈0";
  if (a >= 1000) return x.toExponential(0).replace("e+", "e");
  return x.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2);
}

/**
 * The source's terms as rows [{label, add, running}] and its result, from unit_info and the window
 * (a pool's values, float32 [kh * kw], NaN on the padding). Then the steps: [{step, input, output, computed}].
 * total is the last output: the number the view ends on.
 */
export function unitSum(info, windowValues = null) {
  const rows = [];
  let running = 0;
  const add = (label, value, extra = {}) => { running += value; rows.push({ label, add: value, running, ...extra }); };
  if (info.kind === "conv" && info.conv) {
    const c = info.conv;
    c.channels.forEach((channel, i) => add(`channel ${channel}`, c.sums[i], { channel, index: i }));
    if (c.other) add(`${c.other.count} other channel${c.other.count === 1 ? "" : "s"}`, c.other.sum, { other: c.other.count });
    if (c.bias != null) add("bias", c.bias, { bias: true });
  } else if (info.kind === "linear" && info.linear) {
    const l = info.linear;
    l.inputs.forEach((input, i) => add(`input ${input}`, l.products[i], { input, index: i }));
    if (l.rest_count) add(`${l.rest_count} other inputs`, l.rest, { other: l.rest_count });
    if (l.bias != null) add("bias", l.bias, { bias: true });
  } else if (info.kind === "pool" && info.pool && windowValues) {
    const values = [...windowValues].filter((v) => !Number.isNaN(v));
    if (info.pool.op === "max") running = Math.max(...values);
    else running = values.reduce((a, b) => a + b, 0) / info.pool.divisor;
  } else if (info.kind === "combine" && info.combine) {
    const { op, operands } = info.combine;
    if (op === "add") running = operands.reduce((a, b) => a + b, 0);
    else if (op === "subtract") running = operands[0] - operands.slice(1).reduce((a, b) => a + b, 0);
    else if (op === "multiply") running = operands.reduce((a, b) => a * b, 1);
    else if (op === "divide") running = operands[0] / operands[1];
    else running = operands[0]; // concat: the operand that holds the unit (input `part`)
  }
  const source = running;
  const steps = applySteps(info.steps || [], source);
  return { rows, source, steps, total: steps.length ? steps[steps.length - 1].output : source };
}

/** Steps applied in turn from x: [{step, input, output, computed}]. */
export function applySteps(steps, x) {
  return steps.map((step) => {
    const { output, computed } = applyStep(step, x);
    const entry = { step, input: x, output, computed };
    x = output;
    return entry;
  });
}

/** Relative difference of the view's total from the model's number, on the scale of the terms added. */
export function agreement(total, value, scale = 0) {
  const size = Math.max(Math.abs(value), Math.abs(total), scale, 1e-30);
  return Math.abs(total - value) / size;
}

/** Where output position (oy, ox) reads its input map (H x W) from: {y0, x0, h, w, dy, dx} (may lie on the padding).
 * slide: {kh, kw, sy, sx, py, px, dy, dx} of a convolution or pooling, or {adaptive: true} (PyTorch's adaptive windows). */
export function windowAt(slide, oy, ox, H, W, Ho, Wo) {
  if (slide.adaptive) {
    const y0 = Math.floor((oy * H) / Ho), y1 = Math.ceil(((oy + 1) * H) / Ho);
    const x0 = Math.floor((ox * W) / Wo), x1 = Math.ceil(((ox + 1) * W) / Wo);
    return { y0, x0, h: y1 - y0, w: x1 - x0, dy: 1, dx: 1 };
  }
  const dy = slide.dy || 1, dx = slide.dx || 1;
  return { y0: oy * slide.sy - slide.py, x0: ox * slide.sx - slide.px, h: (slide.kh - 1) * dy + 1, w: (slide.kw - 1) * dx + 1, dy, dx };
}

/** The kh x kw values a window (windowAt) reads from a map of H x W (row-major), NaN where it lies on the padding. */
export function windowValues(map, H, W, w, kh, kw) {
  const out = new Float64Array(kh * kw).fill(NaN);
  for (let i = 0; i < kh; i++) {
    const y = w.y0 + i * w.dy;
    if (y < 0 || y >= H) continue;
    for (let j = 0; j < kw; j++) {
      const x = w.x0 + j * w.dx;
      if (x >= 0 && x < W) out[i * kw + j] = map[y * W + x];
    }
  }
  return out;
}

/** Output positions revealed per second so that a map of `count` positions takes about `seconds` (at least 1.5 / s). */
export function positionsPerSecond(count, seconds) {
  return Math.max(1.5, count / Math.max(0.5, seconds));
}

/** The softmax rows recomputed here: exp(logit − shift) and exp / Σ (Σ over every class, from the kernel);
 * `others` is what the classes not shown add to Σ. */
export function softmaxRows(sm) {
  const rows = sm.classes.map((c, i) => {
    const shifted = sm.logits[i] - sm.shift, exp = Math.exp(shifted);
    return { index: c, label: sm.labels[i], logit: sm.logits[i], shifted, exp, probability: exp / sm.exp_sum };
  });
  return { rows, others: sm.exp_sum - rows.reduce((a, r) => a + r.exp, 0), sum: sm.exp_sum };
}

/** A signed value as an index 0..255 of a diverging colour table (128 is exactly zero). */
export function diverging(v, extent) {
  if (Number.isNaN(v)) return -1;
  if (!(extent > 0)) return 128;
  return Math.max(0, Math.min(255, Math.round(128 + (127 * v) / extent)));
}

/** The largest |value| of an array (NaN skipped), or 0. */
export function extentOf(values) {
  let m = 0;
  for (const v of values) if (!Number.isNaN(v) && Math.abs(v) > m) m = Math.abs(v);
  return m;
}
