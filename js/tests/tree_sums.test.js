import { test } from "node:test";
import assert from "node:assert/strict";

test("the relevance tree's caption says what the children hold of their parent, and the leak", async () => {
  globalThis.document ??= undefined; // (the module only touches the DOM when mounted)
  const { sumsText } = await import("../src/panels/tree.js");
  const node = { label: "global_pool[795]", score: 0.4, children_total: 0.3, children: [{ score: 0.1 }, { score: 0.05 }] };
  const text = sumsText({ rule: "lrp" }, node);
  assert.match(text, /^relevance adds up: all channels below global_pool\[795\] hold 0\.300 of its 0\.400/);
  assert.match(text, /leak 0\.100 \(25\.00%\)/); // 0.4 - 0.3, a quarter of the parent
  assert.match(text, /the 2 shown hold 0\.150 \(37\.50%\)/);
  // Cogswell's gradient scores: no shares, no leak; the caption says they are no decomposition
  const guided = sumsText({ rule: "guided" }, node);
  assert.match(guided, /not a decomposition/);
  assert.doesNotMatch(guided, /leak/);
  // a node not expanded (no children_total) or without children: nothing to say
  assert.equal(sumsText({ rule: "lrp" }, { ...node, children_total: undefined }), "");
  assert.equal(sumsText({ rule: "lrp" }, { ...node, children: [] }), "");
});
