import { test } from "node:test";
import assert from "node:assert/strict";
import { agreement, applySteps, diverging, positionsPerSecond, softmaxRows, unitSum, windowAt } from "../src/unit_math.js";

test("a convolution's total is the shown channel sums, the other channels' sum and the bias, then each step", () => {
  const info = {
    kind: "conv", value: 0,
    conv: { channels: [4, 1], sums: [2.5, -1.25], other: { count: 3, sum: 0.5 }, bias: -0.25 },
    steps: [{ name: "batch_norm", scale: 2, shift: -1, input: 0, output: 0 }, { name: "relu", input: 0, output: 0 }],
  };
  const { rows, source, steps, total } = unitSum(info);
  assert.deepEqual(rows.map((r) => r.running), [2.5, 1.25, 1.75, 1.5]);
  assert.deepEqual(rows.map((r) => r.label), ["channel 4", "channel 1", "3 other channels", "bias"]);
  assert.equal(source, 1.5);
  assert.deepEqual(steps.map((s) => [s.input, s.output, s.computed]), [[1.5, 2, true], [2, 2, true]]);
  assert.equal(total, 2);
  // a negative pre-activation: the ReLU gives 0
  assert.equal(unitSum({ ...info, conv: { ...info.conv, bias: -10 } }).total, 0);
});

test("activations: ReLU6 as hardtanh with its bounds; an unknown one keeps the model's output and says so", () => {
  const [clamped] = applySteps([{ name: "hardtanh", bounds: [0, 6], output: 123 }], 7.5);
  assert.deepEqual([clamped.output, clamped.computed], [6, true]);
  const [unknown] = applySteps([{ name: "mish", output: 0.8 }], 1);
  assert.deepEqual([unknown.output, unknown.computed], [0.8, false]);
  const [silu] = applySteps([{ name: "silu" }], 2);
  assert.ok(Math.abs(silu.output - 2 / (1 + Math.exp(-2))) < 1e-15);
  const [hs] = applySteps([{ name: "hardswish" }], 1);
  assert.ok(Math.abs(hs.output - 4 / 6) < 1e-15);
});

test("pooling: the largest number of the window (padding skipped), or the sum over the divisor", () => {
  const values = Float32Array.from([1, NaN, -3, 2.5]);
  assert.equal(unitSum({ kind: "pool", pool: { op: "max" }, steps: [] }, values).total, 2.5);
  assert.equal(unitSum({ kind: "pool", pool: { op: "average", divisor: 4 }, steps: [] }, values).total, 0.125);
});

test("linear layers and combinations add up their parts", () => {
  const linear = { kind: "linear", steps: [], linear: { inputs: [7, 2], products: [3, -1], rest: 0.5, rest_count: 10, bias: 1 } };
  assert.equal(unitSum(linear).total, 3.5);
  assert.equal(unitSum({ kind: "combine", steps: [], combine: { op: "add", operands: [1.5, 2] } }).total, 3.5);
  assert.equal(unitSum({ kind: "combine", steps: [], combine: { op: "multiply", operands: [1.5, 2] } }).total, 3);
  assert.equal(unitSum({ kind: "combine", steps: [], combine: { op: "concat", operands: [4] } }).total, 4);
});

test("a window slides with the stride, starts on the padding and spans the dilated kernel", () => {
  const slide = { kh: 3, kw: 3, sy: 2, sx: 2, py: 1, px: 1, dy: 1, dx: 1 };
  assert.deepEqual(windowAt(slide, 0, 0, 8, 8, 4, 4), { y0: -1, x0: -1, h: 3, w: 3, dy: 1, dx: 1 });
  assert.deepEqual(windowAt(slide, 2, 3, 8, 8, 4, 4), { y0: 3, x0: 5, h: 3, w: 3, dy: 1, dx: 1 });
  assert.deepEqual(windowAt({ ...slide, dy: 2, dx: 2, py: 2, px: 2 }, 1, 1, 8, 8, 4, 4).h, 5);
  // PyTorch's adaptive windows: floor(i H / Ho) .. ceil((i + 1) H / Ho)
  assert.deepEqual(windowAt({ adaptive: true }, 1, 0, 7, 7, 3, 3), { y0: 2, x0: 0, h: 3, w: 3, dy: 1, dx: 1 });
  assert.deepEqual(windowAt({ adaptive: true }, 0, 0, 7, 7, 1, 1), { y0: 0, x0: 0, h: 7, w: 7, dy: 1, dx: 1 });
});

test("softmax rows: exp of the shifted logits over the sum of every class", () => {
  const logits = [2, 1, -1];
  const all = [...logits, 0.5]; // a class not shown
  const shift = 2, sum = all.reduce((a, l) => a + Math.exp(l - shift), 0);
  const { rows, others } = softmaxRows({ classes: [3, 0, 2], labels: ["a", "b", "c"], logits, shift, exp_sum: sum });
  assert.ok(Math.abs(rows[0].probability - Math.exp(0) / sum) < 1e-15);
  assert.ok(Math.abs(others - Math.exp(0.5 - 2)) < 1e-12);
  assert.ok(Math.abs(rows.reduce((a, r) => a + r.probability, 0) + others / sum - 1) < 1e-12);
});

test("colours and pace", () => {
  assert.equal(diverging(0, 5), 128);
  assert.equal(diverging(5, 5), 255);
  assert.equal(diverging(-5, 5), 1);
  assert.equal(diverging(NaN, 5), -1);
  assert.equal(positionsPerSecond(256, 8), 32);
  assert.equal(positionsPerSecond(4, 8), 1.5); // never slower than 1.5 positions a second
  assert.ok(agreement(1 + 1e-7, 1) < 1e-5 && agreement(1.1, 1) > 1e-2);
});

test("grid cells print short numbers", async () => {
  const { cellNum } = await import("../src/unit_math.js");
  assert.deepEqual([0.2764, -0.0031, 0, 12.345, -123.4, 4321, NaN].map(cellNum), ["0.28", "≈0", "0", "12.3", "-123", "4e3", "pad"]);
});

test("steps are named as a reader knows them", async () => {
  const { stepName } = await import("../src/unit_math.js");
  assert.equal(stepName({ name: "hardtanh", bounds: [0, 6] }), "ReLU6");
  assert.equal(stepName({ name: "hardtanh", bounds: [-1, 1] }), "hardtanh");
  assert.equal(stepName({ name: "batch_norm" }), "batch norm");
});

test("a window's values: NaN on the padding, dilation skips", async () => {
  const { windowValues, windowAt } = await import("../src/unit_math.js");
  const map = Float32Array.from({ length: 16 }, (_, i) => i); // 4 x 4: value = 4 y + x
  const w = windowAt({ kh: 3, kw: 3, sy: 1, sx: 1, py: 1, px: 1, dy: 1, dx: 1 }, 0, 0, 4, 4, 4, 4);
  assert.deepEqual([...windowValues(map, 4, 4, w, 3, 3)], [NaN, NaN, NaN, NaN, 0, 1, NaN, 4, 5]);
  const d = windowAt({ kh: 2, kw: 2, sy: 1, sx: 1, py: 0, px: 0, dy: 2, dx: 2 }, 1, 1, 4, 4, 2, 2);
  assert.deepEqual([...windowValues(map, 4, 4, d, 2, 2)], [5, 7, 13, 15]);
});
