import test from "node:test";
import assert from "node:assert/strict";
import { decodeArray } from "../src/buffers.js";

test("decodes uint8 from a DataView with a non-zero byteOffset", () => {
  const backing = new Uint8Array([9, 9, 9, 1, 2, 3, 4, 5, 6, 9]);
  const view = new DataView(backing.buffer, 3, 6);
  const out = decodeArray({ data: view, dtype: "uint8", shape: [2, 3] });
  assert.deepEqual([...out.array], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(out.shape, [2, 3]);
  assert.equal(out.array.buffer, backing.buffer, "no copy for uint8");
});

test("decodes float32 from an aligned offset without copying", () => {
  const values = new Float32Array([7, 1.5, -2, 3.25]);
  const view = new DataView(values.buffer, 4, 12);
  const out = decodeArray({ data: view, dtype: "float32", shape: [3] });
  assert.deepEqual([...out.array], [1.5, -2, 3.25]);
  assert.equal(out.array.byteOffset, 4);
});

test("decodes float32 from an unaligned offset by copying", () => {
  const values = new Float32Array([0.5, -1, 2]);
  const bytes = new Uint8Array(1 + values.byteLength);
  bytes.set(new Uint8Array(values.buffer), 1);
  const out = decodeArray({ data: new DataView(bytes.buffer, 1, values.byteLength), dtype: "float32", shape: [3] });
  assert.deepEqual([...out.array], [0.5, -1, 2]);
});

test("accepts typed arrays (with offsets) and ArrayBuffers", () => {
  const backing = new Uint8Array([0, 0, 10, 20, 30, 40]);
  assert.deepEqual([...decodeArray({ data: backing.subarray(2), dtype: "uint8", shape: [2, 2] }).array], [10, 20, 30, 40]);
  assert.deepEqual([...decodeArray({ data: backing.buffer, dtype: "uint8", shape: [6] }).array], [0, 0, 10, 20, 30, 40]);
});

test("rejects unknown dtypes, short data and null", () => {
  assert.equal(decodeArray(null), null);
  assert.throws(() => decodeArray({ data: new ArrayBuffer(8), dtype: "float64", shape: [1] }), /dtype/);
  assert.throws(() => decodeArray({ data: new ArrayBuffer(3), dtype: "float32", shape: [1] }), /needs 4/);
});
