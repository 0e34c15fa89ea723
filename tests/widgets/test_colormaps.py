import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.widgets.colormaps import apply, lut, names

JS = Path(__file__).resolve().parents[2] / "js"


def test_luts_are_256_rgb_bytes():
    assert {"viridis", "gray", "coolwarm", "inferno"} <= set(names())
    for name in names():
        table = lut(name)
        assert table.shape == (256, 3) and table.dtype == np.uint8
    np.testing.assert_array_equal(lut("gray"), np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1))
    np.testing.assert_array_equal(apply("viridis", np.array([[0, 255]])), lut("viridis")[[[0, 255]]])
    with pytest.raises(cw.OptionError, match="choose one of"):
        lut("jet")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_renderer_uses_the_same_tables():
    script = (
        "import('./src/colormaps.js').then(m => console.log(JSON.stringify("
        "Object.fromEntries(m.colormapNames().map(n => [n, Buffer.from(m.lut(n)).toString('hex')])))))"
    )
    out = subprocess.run(["node", "--input-type=module", "-e", script], cwd=JS, capture_output=True, text=True, check=True)
    from_js = json.loads(out.stdout)
    assert sorted(from_js) == sorted(names())
    for name in names():
        assert bytes.fromhex(from_js[name]) == lut(name).tobytes(), name
