"""A seeded random soak: ~500 front-end interactions with a real Explorer in a real kernel.

Layer / channel / target / window and stride / image / tab / tree expansion / depth and k clicks,
the saliency method, the tree's rule and the LRP composite (relevance on the worker threads),
Compute and Cancel of the slow panels, Visualise start and stop, Atlas build, cancel and cell
clicks, a click on a scanned image: all sent as the widget's own comm messages, 0-50 ms apart so the
jobs overlap, while a thread of the user's calls its own model all along. Afterwards the batch-norm
model (train mode, mixed flags) must be exactly as it was, the user's thread must never have
failed, no hook may be left, nothing may spin, and the Explorer may show only the errors listed in
``EXPECTED_ERRORS`` (checked every ``SAMPLE_EVERY`` interactions and at the end).

``CW_SOAK_SEED`` and ``CW_SOAK_STEPS`` in the environment change the seed and the number of interactions.
"""

from __future__ import annotations

import os
import random
import time

SEED = int(os.environ.get("CW_SOAK_SEED", "0"))
STEPS = int(os.environ.get("CW_SOAK_STEPS", "500"))
SAMPLE_EVERY = 50

#: Errors a user can cause with these clicks (each a substring of an ``error`` line): none. (A click on
#: a node of a tree no longer shown -- the root changed meanwhile -- used to show "a path goes one layer
#: down per step"; the Explorer now drops such a stale click quietly.)
EXPECTED_ERRORS: tuple[str, ...] = ()


def unexpected(error: str) -> list[str]:
    return [line for line in error.splitlines() if line.strip() and not any(e in line for e in EXPECTED_ERRORS)]


class Soak:
    """The random user: ``step()`` sends one interaction (and reads what a user would see first)."""

    def __init__(self, kernel, cid: str, rng: random.Random):
        self.k, self.cid, self.rng = kernel, cid, rng
        self.layers = dict(kernel.value("[[l['name'], l['shape'][0]] for l in ex.layers]"))
        self.spatial = [name for name, shape in kernel.value("[[l['name'], l['shape']] for l in ex.layers]") if len(shape) == 3]
        self.images = kernel.value("list(cw.SAMPLE_IMAGES)")
        self.tabs = [value for value, _ in kernel.value("ex.choices['options']['tab']")]
        self.ranges = kernel.value("ex.ranges_now")
        self.scanned = kernel.value("ex.scan.count")
        self.classes = kernel.value("ex.net.num_classes")
        self.layer = kernel.value("ex.layer")
        self.counts: dict[str, int] = {}
        self.actions = [  # (weight, action)
            (8, self.pick_layer), (8, self.pick_channel), (6, self.pick_target), (6, self.move_window),
            (4, self.pick_image), (5, self.pick_tab), (6, self.expand_tree), (2, self.tree_settings),
            (8, self.panel_job), (6, self.visualize_job), (3, self.viz_settings), (5, self.atlas_job),
            (4, self.atlas_click), (1, self.scan_image), (3, self.pick_relevance),
        ]

    def step(self) -> None:
        action = self.rng.choices([a for _, a in self.actions], [w for w, _ in self.actions])[0]
        self.counts[action.__name__] = self.counts.get(action.__name__, 0) + 1
        action()

    def update(self, **state) -> None:
        self.k.update(self.cid, state)

    # ------------------------------------------------------------------ the interactions
    def pick_layer(self):
        self.layer = self.rng.choice(list(self.layers))
        self.update(layer=self.layer)

    def pick_channel(self):
        self.update(channel=self.rng.randrange(self.layers[self.layer]))

    def pick_target(self):
        self.update(target=self.rng.choice(["top", "unit", self.rng.randrange(self.classes)]))

    def move_window(self):
        window = self.rng.randint(max(4, self.ranges["window"]["min"]), self.ranges["window"]["max"])
        stride = self.rng.randint(max(2, self.ranges["stride"]["min"]), min(window, self.ranges["stride"]["max"]))
        self.update(window=window, stride=stride)

    def pick_image(self):
        self.update(image_name=self.rng.choice(self.images))

    def pick_tab(self):
        self.update(tab=self.rng.choice(self.tabs))

    def expand_tree(self):
        """Click a child of the deepest shown level (expand), or a node higher up (collapse to it)."""
        tree = self.k.value("ex.tree")
        levels = tree.get("levels") or []
        path = [list(step) for step in tree.get("path", [])]
        if levels and levels[-1]["children"] and self.rng.random() < 0.7:
            child = self.rng.choice(levels[-1]["children"])
            self.update(tree_path=path + [[child["layer"], child["channel"]]])
        else:
            self.update(tree_path=path[: self.rng.randrange(len(path) + 1)])

    def tree_settings(self):
        self.update(depth=self.rng.randint(1, 3), k=self.rng.randint(1, 6))

    def pick_relevance(self):
        """LRP: the saliency method, the tree's rule and the composite (relevance on the worker threads)."""
        choice = self.rng.random()
        if choice < 0.4:
            self.update(method=self.rng.choice(["lrp", "lrp", "guided_backprop"]))
        elif choice < 0.8:
            self.update(rule=self.rng.choice(["lrp", "lrp", "guided", "gradient"]))
        else:
            self.update(composite=self.rng.choice(["epsilon_plus_flat", "epsilon_gamma_box", "zero", "epsilon_alpha2_beta1"]))

    def panel_job(self):
        self.k.job(self.cid, self.rng.choice(["recompute", "recompute", "cancel"]),
                   self.rng.choice(["occlusion", "occlusion", "saliency", "tree"]))

    def visualize_job(self):
        self.k.job(self.cid, self.rng.choice(["recompute", "cancel"]), "visualize")

    def viz_settings(self):
        self.update(viz_steps=self.rng.choice([8, 16, 24, 32]), viz_lr=self.rng.choice([0.02, 0.05, 0.1]),
                    viz_mode=self.rng.choice(["visualize", "visualize", "dream"]))

    def atlas_job(self):
        if self.rng.random() < 0.2:
            self.update(atlas_grid=self.rng.randint(4, 6))
        self.k.job(self.cid, self.rng.choice(["recompute", "recompute", "cancel"]), "atlas")

    def atlas_click(self):
        """Click (explain) or hover a cell the atlas shows; nothing when none is shown."""
        cells = self.k.value("ex.atlas_info.get('cells', [])")
        if cells:
            row, col = self.rng.choice(cells)[:2]
            from .driver import atlas_click

            self.k.custom(self.cid, atlas_click(self.rng.choice(["explain", "hover"]), row, col))

    def scan_image(self):
        self.k.custom(self.cid, {"type": "scan_image", "index": self.rng.randrange(self.scanned)})


def test_random_soak_through_comm_messages(kernel, model_in):
    start = time.monotonic()
    print(model_in("small", 32))
    kernel.execute("""
scan = net.scan(cw.datasets.photos(), k=4, progress=False)  # 23 small photos
ex = cw.Explorer(net, image="cat")
ex.scan = scan
user = UserLoop()
""")
    cid = kernel.comm_id("ex")
    kernel.wait_idle("ex")
    rng = random.Random(SEED)
    soak = Soak(kernel, cid, rng)
    seen: dict[str, int] = {}  # unexpected error lines seen while sampling -> the step
    for i in range(STEPS):
        soak.step()
        time.sleep(rng.uniform(0.0, 0.05))
        if (i + 1) % SAMPLE_EVERY == 0:
            for line in unexpected(kernel.value("ex.error")):
                seen.setdefault(line, i + 1)
    soak_s = time.monotonic() - start
    waited = kernel.wait_idle("ex", timeout=120)
    user = kernel.value("user.stop()")
    differences = kernel.value("model_differences(model, snap)")
    hooks, expected_hooks = kernel.value("[hook_count(model), snap['hooks']]")
    grads = kernel.value("[n for n, p in model.named_parameters() if p.grad is not None]")
    error = kernel.value("ex.error")
    spinning = kernel.value("[name for name, p in ex.progress.items() if p.get('state') == 'running']"
                            " + (['visualize'] if ex.viz_info.get('running') else [])")
    for line in unexpected(error):
        seen.setdefault(line, STEPS)
    ran = kernel.value("__import__('collections').Counter(c[0] for c in engine_calls)")
    print(f"seed {SEED}, {STEPS} interactions: {soak.counts}")
    print(f"engine calls: {ran}")
    print(f"user loop: {user['calls']} calls, {user['failures']} failures {user['errors']}")
    print(f"error at the end: {error!r}")
    for line, step in seen.items():
        print(f"UNEXPECTED ERROR (first seen by step {step}): {line}")
    print(f"wall time: {time.monotonic() - start:.1f} s (interactions {soak_s:.1f} s, then idle after {waited:.1f} s)")
    problems = []  # every check, so one run shows all that went wrong
    if not all(ran.get(job, 0) > 0 for job in ("occlusion", "visualize", "atlas")):
        problems.append(f"a job never ran (the soak proves little): {ran}")
    if user["calls"] < 100:
        problems.append(f"the user's thread hardly ran: {user['calls']} calls")
    if user["failures"]:
        problems.append(f"the user's own model failed {user['failures']} times: {user['errors']}")
    if differences:
        problems.append(f"the model changed: {differences[:8]} ({len(differences)} in all)")
    if grads:
        problems.append(f".grad set on {grads[:8]}")
    if hooks != expected_hooks:
        problems.append(f"hooks: {expected_hooks} before, {hooks} after")
    if spinning:
        problems.append(f"still shown as running after the end: {spinning}")
    if seen:
        problems.append(f"unexpected errors: {list(seen)}")
    assert not problems, "\n".join(problems)
