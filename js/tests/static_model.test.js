import { test } from "node:test";
import assert from "node:assert/strict";
import { isStatic, restoreState, staticModel } from "../src/static_model.js";
import { commit } from "../src/actions.js";

const bytes = Uint8Array.from([1, 2, 250, 7]);
const saved = {
  state: { colormap: "viridis", channel: 3, request_seq: 4, saliency: { dtype: "uint8", shape: [2, 2] }, gone: null },
  buffers: [{ path: ["saliency", "data"], encoding: "base64", data: Buffer.from(bytes).toString("base64") },
    { path: ["gone", "data"], encoding: "base64", data: "AAAA" }],
};

test("restoreState puts a DataView with the decoded bytes at each buffer path, drops orphans", () => {
  const state = restoreState(saved);
  assert.ok(state.saliency.data instanceof DataView);
  assert.deepEqual([...new Uint8Array(state.saliency.data.buffer)], [...bytes]);
  assert.equal(state.gone, null);
  assert.equal(saved.state.saliency.data, undefined); // the saved state is not modified
});

test("client-side changes stay; kernel-backed ones are undone after the caller's follow-up", async () => {
  const model = staticModel(saved);
  assert.ok(isStatic(model) && !isStatic({ get() {} }));
  const seen = [];
  const refused = [];
  model.on("change:channel", () => seen.push(model.get("channel")));
  model.on("static:refused", (names) => refused.push(names));
  commit(model, { colormap: "magma" }, { kernel: false });
  assert.equal(model.get("colormap"), "magma");
  commit(model, { channel: 9 });
  assert.equal(model.get("channel"), 9); // until the microtask
  await Promise.resolve();
  assert.equal(model.get("channel"), 3);
  assert.equal(model.get("request_seq"), 4);
  assert.deepEqual(seen, [9, 3]);
  assert.deepEqual(refused, [["channel", "request_seq"]]);
  model.send({ type: "scan_image", index: 1 });
  assert.deepEqual(refused[1], ["scan_image"]);
});
