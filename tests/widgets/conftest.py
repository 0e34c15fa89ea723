import pytest

import cnn_widgets as cw


@pytest.fixture(scope="session")
def net():
    return cw.load_default()


@pytest.fixture()
def explorer(net):
    # 4 occlusion windows keep each test fast; everything else is the default widget
    return cw.Explorer(net, window=112, stride=112)
