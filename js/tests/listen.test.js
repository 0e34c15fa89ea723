import { test } from "node:test";
import assert from "node:assert/strict";
import { listen, listenBatched } from "../src/dom.js";

/** A model whose set(state) fires one change event per trait, synchronously, as Backbone's does. */
function fakeModel() {
  const handlers = new Map();
  return {
    on(event, fn) { handlers.set(event, [...(handlers.get(event) || []), fn]); },
    off(event, fn) { handlers.set(event, (handlers.get(event) || []).filter((f) => f !== fn)); },
    set(state) { for (const name of Object.keys(state)) for (const fn of handlers.get(`change:${name}`) || []) fn(); },
  };
}

const FRAME = { viz_frame: 1, viz_curve: 2, viz_info: 3, progress: 4 }; // what one Visualise push changes
const NAMES = ["viz_frame", "viz_curve", "viz_info", "progress", "viz_mode"];
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

test("listen calls back once per changed trait: four draws for one frame", () => {
  const model = fakeModel();
  let calls = 0;
  listen(model, NAMES, () => calls++);
  model.set(FRAME);
  assert.equal(calls, 4);
});

test("listenBatched calls back once per update, after all of its change events", async () => {
  const model = fakeModel();
  const seen = [];
  listenBatched(model, NAMES, () => seen.push("draw"));
  model.set(FRAME);
  assert.deepEqual(seen, []); // not inside the update: its other traits are not set yet
  await tick();
  assert.deepEqual(seen, ["draw"]);
  model.set(FRAME);
  model.set({ progress: 5 }); // two updates in one turn of the event loop: one draw shows both
  await tick();
  assert.deepEqual(seen, ["draw", "draw"]);
  model.set({ other: 1 }); // a trait it does not listen to
  await tick();
  assert.equal(seen.length, 2);
});

test("nothing is drawn after the view is removed, even a draw already queued", async () => {
  const model = fakeModel();
  let calls = 0;
  const off = listenBatched(model, NAMES, () => calls++);
  model.set(FRAME);
  off();
  model.set(FRAME);
  await tick();
  assert.equal(calls, 0);
});
