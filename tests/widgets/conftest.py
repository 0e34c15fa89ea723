import pytest
import torch
from torch import nn

import cnn_widgets as cw


@pytest.fixture(autouse=True)
def close_new_widgets():
    """Close the widgets a test made: an open widget stays in ipywidgets' registry (and its Explorer,
    images and caches in memory) for the life of the process."""
    from ipywidgets.widgets import widget

    before = set(widget._instances)
    yield
    for key in [k for k in list(widget._instances) if k not in before]:
        made = widget._instances.get(key)
        if made is not None:
            made.close()


@pytest.fixture(scope="session")
def net():
    return cw.load_default()


@pytest.fixture()
def explorer(net):
    # 4 occlusion windows keep each test fast; everything else is the default widget
    return cw.Explorer(net, window=112, stride=112)


class TinyNet(nn.Module):
    """Two strided convs and a linear layer on 3 classes: a widget in a fraction of a second."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 5, stride=4)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv2(torch.relu(self.conv1(x))))).flatten(1))


@pytest.fixture(scope="module")
def tiny():
    return cw.Network(TinyNet(), labels=["a", "b", "c"])
