"""The browser infrastructure itself, with a tiny inline anywidget (no cnn_widgets code involved).

Proves, in JupyterLab 4 and Notebook 7: the throw-away server is up with TCP_NODELAY on the kernel
websocket, a widget's ES module renders, binary bytes sent from Python are drawn exactly on a canvas
(read back with getImageData), a Python-side change redraws it, and a browser click reaches the
kernel's trait.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

PROBE = r'''
import anywidget
import traitlets


class Probe(anywidget.AnyWidget):
    _esm = """
    export default {
      render({ model, el }) {
        const root = document.createElement('div');
        root.className = 'probe';
        const canvas = document.createElement('canvas');
        canvas.className = 'probe-canvas';
        canvas.style.cssText = 'width: 256px; height: 32px; image-rendering: pixelated; border: 1px solid #888';
        const button = document.createElement('button');
        button.className = 'probe-button';
        button.textContent = 'click me';
        let version = 0;
        const draw = () => {
          const view = model.get('pixels');  // a DataView over the binary buffer
          const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
          canvas.width = Math.max(1, bytes.length);
          canvas.height = 1;
          const ctx = canvas.getContext('2d');
          const image = ctx.createImageData(canvas.width, 1);
          bytes.forEach((v, i) => { image.data.set([v, 255 - v, v >> 1, 255], 4 * i); });
          ctx.putImageData(image, 0, 0);
          canvas.dataset.version = String(++version);
        };
        const click = () => { model.set('clicks', model.get('clicks') + 1); model.save_changes(); };
        button.addEventListener('click', click);
        model.on('change:pixels', draw);
        draw();
        root.append(canvas, button);
        el.append(root);
        return () => { model.off('change:pixels', draw); button.removeEventListener('click', click); };
      },
    };
    """
    pixels = traitlets.Bytes(bytes(range(0, 256, 16))).tag(sync=True)
    clicks = traitlets.Int(0).tag(sync=True)


probe = Probe()
probe
'''


def expected_rgb(values: bytes) -> list[list[int]]:
    return [[v, 255 - v, v >> 1] for v in values]


def read_probe_pixels(page) -> list[list[int]]:
    return page.evaluate(
        """() => {
          const c = document.querySelector('canvas.probe-canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, 1).data;
          const out = [];
          for (let i = 0; i < d.length; i += 4) out.push([d[i], d[i + 1], d[i + 2]]);
          return out;
        }"""
    )


@pytest.mark.parametrize("kind", ["lab", "notebook"])
def test_probe_widget_round_trip(open_notebook, kind):
    nb = open_notebook(kind, f"smoke_{kind}.ipynb", [PROBE])
    nb.screenshot_selector = "div.probe"
    assert nb.server.nodelay_marker.exists(), "the Nagle-off server config did not run on the kernel websocket"

    nb.run_all()
    page = nb.page
    page.wait_for_selector("canvas.probe-canvas[data-version]", timeout=60_000)

    # Python -> browser: the default bytes are drawn exactly
    assert read_probe_pixels(page) == expected_rgb(bytes(range(0, 256, 16)))

    # Python -> browser again, from a later cell: redraw with the new bytes
    version = int(page.get_attribute("canvas.probe-canvas", "data-version"))
    nb.run_cell("probe.pixels = bytes([0, 1, 2, 127, 128, 254, 255])")
    page.wait_for_function(
        "(v) => Number(document.querySelector('canvas.probe-canvas').dataset.version) > v", arg=version, timeout=30_000
    )
    assert read_probe_pixels(page) == expected_rgb(bytes([0, 1, 2, 127, 128, 254, 255]))

    # browser -> kernel: a click changes the trait (read in a later cell). The front end may send a
    # click's update after the cell's execute request (seen under load in Notebook 7: 1 of 2), so
    # the kernel is asked again until both arrived; a third would still fail
    page.click("button.probe-button")
    page.click("button.probe-button")
    deadline = time.monotonic() + 30
    while (clicks := nb.kernel_json("probe.clicks")) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert clicks == 2

    assert nb.console_errors() == [], "\n".join(nb.console_errors())
