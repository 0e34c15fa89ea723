// Controls bound to one trait, with their options or range from the `choices` trait. Each returns
// {el, cleanup}; it follows the trait (and the choices) when they change in the kernel.
import { h, listen, setOptions } from "./dom.js";
import { commit } from "./actions.js";
import { options, range } from "./choices.js";
import { isStatic, STATIC_NOTE } from "./static_model.js";

/** A static export (static_model.js) disables kernel-backed controls; client-side ones are marked data-client.
 * `needsKernel`: the setting only means something to the kernel even when no computation waits on it (the
 * Visualise and Atlas settings, read when Start or Build is pressed). */
function markKernel(control, model, needsKernel) {
  if (!needsKernel) control.dataset.client = "";
  else if (isStatic(model)) { control.disabled = true; control.title = `${control.title} — ${STATIC_NOTE}`; }
}

/**
 * A <select> for a trait. `kernel: false` for display-only traits (no computation waits on them);
 * `optionsOf(model)` replaces the plain menu (e.g. to disable an entry), `follow` names the other
 * traits it reads, `parse` turns the option's string back into the trait's value.
 */
export function choiceSelect(model, trait, { kernel = true, needsKernel = kernel, title = trait, optionsOf = (m) => options(m, trait), follow = [], parse = (v) => v } = {}) {
  const el = h("select", { "data-trait": trait, title });
  markKernel(el, model, needsKernel);
  el.addEventListener("change", () => commit(model, { [trait]: parse(el.value) }, { kernel }));
  const update = () => setOptions(el, optionsOf(model), model.get(trait));
  const off = listen(model, [trait, "choices", ...follow], update);
  update();
  return { el, cleanup: off };
}

/**
 * A range input for a trait, labelled with its name. With `kernel` (the default) a drag sends at
 * most one update per `dragMs` (the kernel computes only the newest anyway) and the value is
 * shown beside it (or with `showValue`); without, `onInput(value)` redraws locally and the value is sent on release.
 */
export function rangeSlider(model, trait, { kernel = true, needsKernel = kernel, onInput = null, dragMs = 120, title = trait, showValue = kernel } = {}) {
  const input = h("input", { type: "range", "data-trait": trait, title });
  markKernel(input, model, needsKernel);
  const shown = showValue ? h("span", { class: "cnnw-slider-value" }) : null;
  let timer = null;
  const send = () => {
    clearTimeout(timer); timer = null;
    const value = Number(input.value);
    if (value !== model.get(trait)) commit(model, { [trait]: value }, { kernel });
  };
  input.addEventListener("input", () => {
    if (shown) shown.textContent = input.value;
    if (onInput) onInput(Number(input.value));
    if (kernel && !timer) timer = setTimeout(send, dragMs);
  });
  input.addEventListener("change", send);
  function update() {
    const { min, max, step } = range(model, trait);
    input.min = String(min); input.max = String(max); input.step = String(step);
    input.value = String(model.get(trait));
    if (shown) shown.textContent = String(model.get(trait));
  }
  const off = listen(model, [trait, "choices"], update);
  update();
  return { el: h("label", {}, trait, input, shown), input, cleanup() { off(); clearTimeout(timer); } };
}
