"""Fixtures of the kernel tier: a real ipykernel kernel per test, and models with batch norm in train mode.

Each test gets its own kernel (the engine keeps per-process state: plan caches, the owner of each
model's inference state), shut down by the fixture whether the test passed or failed. What the
kernel wrote to stderr (worker threads' tracebacks included) is printed at teardown, so a failing
test shows it.
"""

from __future__ import annotations

import pytest

from .driver import KernelDriver

#: Kernel-side: ``model`` (BatchNorm, train mode, mixed flags), ``snap`` (its model_snapshot taken
#: before anything of cnn_widgets touched it) and ``net`` (a cw.Network of it at ``{size}`` px).
#: Mixed flags, so a restore that only "sets everything back to train / trainable" is caught too.
MODEL_CODE = {
    "resnet18": """
import torch, torchvision
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=10)
""",
    "small": """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
    nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
    nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
)
""",
}
SETUP = """
import time
import cnn_widgets as cw
from cnn_widgets.engine.hooks import hook_count
model.train()
bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
bns[0].eval()  # one module in eval mode: its flag must stay False
first = next(model.parameters())
first.requires_grad_(False)  # one frozen parameter: it must stay frozen
snap = model_snapshot(model)
net = cw.Network(model, preprocess=cw.imagenet_preprocess(size={size}, resize={size}), input_size={size})
print(cw.__file__)
"""

#: Kernel-side: wraps net.occlusion / visualize / dream / atlas / saliency / contribution_tree (instance
#: attributes, so the Explorer's calls go through them) to record ``engine_calls``: (name, start, end,
#: thread) of every call (the tests check that the jobs they meant to overlap did run).
RECORD_CALLS = """
import threading
engine_calls = []
def _recorded(name, fn):
    def call(*args, **kwargs):
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            engine_calls.append((name, start, time.monotonic(), threading.current_thread().name))
    return call
for _name in ("occlusion", "visualize", "dream", "atlas", "saliency", "contribution_tree"):
    setattr(net, _name, _recorded(_name, getattr(net, _name)))
"""


@pytest.fixture
def kernel():
    driver = KernelDriver()
    try:
        yield driver
    finally:
        stderr = "".join(line for line in "".join(driver.stderr).splitlines(keepends=True)
                         if "running over TCP without encryption" not in line)
        driver.shutdown()
        if stderr.strip():
            print("---- kernel stderr ----\n" + stderr[-8000:])


def setup_model(kernel: KernelDriver, arch: str = "resnet18", size: int = 64, record: bool = True) -> str:
    """Define ``model``, ``snap`` and ``net`` in the kernel; returns the path of the cnn_widgets it imported."""
    out = kernel.execute(MODEL_CODE[arch] + SETUP.replace("{size}", str(size)) + (RECORD_CALLS if record else ""))
    return out.strip().splitlines()[-1]


@pytest.fixture
def model_in(kernel):
    """``model_in(arch, size)``: :func:`setup_model` in this test's kernel."""
    return lambda arch="resnet18", size=64, record=True: setup_model(kernel, arch, size, record)


def overlaps(calls: list, first: str, second: str) -> int:
    """How many (first, second) pairs of recorded engine calls ran at the same time and ended apart
    (one ended while the other still ran: the order in which the old, per-call restore of the
    model's flags broke the other)."""
    a = [c for c in calls if c[0] == first]
    b = [c for c in calls if c[0] == second]
    return sum(1 for x in a for y in b if x[1] < y[2] and y[1] < x[2] and x[2] != y[2])
