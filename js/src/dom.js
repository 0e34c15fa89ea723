// Tiny DOM helpers shared by the views.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "style") el.style.cssText = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child != null) el.append(child);
  return el;
}

/** Fill a <select> with [value, text, disabled] options (rebuilt only when they change) and select value. */
export function setOptions(select, options, value) {
  const key = JSON.stringify(options);
  if (select.dataset.options !== key) {
    select.replaceChildren(...options.map(([v, text, disabled]) => h("option", { value: String(v), text, disabled: !!disabled })));
    select.dataset.options = key;
  }
  select.value = String(value);
}

/** Put RGBA pixels on a canvas of that size, then bump data-version (pixels are final). */
export function paint(canvas, rgba, width, height) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  if (width > 0 && height > 0) canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
  canvas.dataset.version = String((Number(canvas.dataset.version) || 0) + 1);
}

/** Subscribe to model changes; returns the unsubscribe function. */
export function listen(model, names, callback) {
  const events = names.map((n) => `change:${n}`);
  for (const e of events) model.on(e, callback);
  return () => { for (const e of events) model.off(e, callback); };
}

/**
 * Like listen, but callback() runs once for all the changes of one update: a message from the kernel
 * sets its traits together and fires one change event per trait (a Visualise frame: viz_frame,
 * viz_curve, viz_info and progress), so a view drawing on each would draw four times per frame. The
 * call is queued as a microtask after the first event; none runs after the unsubscribe.
 */
export function listenBatched(model, names, callback) {
  let queued = false, closed = false;
  const run = () => { queued = false; if (!closed) callback(); };
  const off = listen(model, names, () => {
    if (!queued) { queued = true; queueMicrotask(run); }
  });
  return () => { closed = true; off(); };
}

export function fmt(x) {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 0.01 || a >= 1e4) ? x.toExponential(2) : x.toFixed(a < 1 ? 3 : 2);
}

/**
 * Call callback(width) once the element is laid out and whenever its content width changes.
 * Measuring waits for the next animation frame: at render time the view may not be in the page
 * yet (width 0, or a parent's width), and a resize handled inside the observer's own callback could
 * resize again and trip the browser's "ResizeObserver loop" error. Returns the disconnect function.
 */
export function onWidth(element, callback) {
  let last = -1, frame = 0;
  const check = () => {
    frame = 0;
    const width = element.clientWidth;
    if (width > 0 && width !== last) { last = width; callback(width); }
  };
  const schedule = () => { if (!frame) frame = requestAnimationFrame(check); };
  const observer = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(schedule);
  if (observer) observer.observe(element);
  schedule();
  return () => { if (observer) observer.disconnect(); if (frame) cancelAnimationFrame(frame); frame = 0; };
}
