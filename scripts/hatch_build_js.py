"""Hatch build hook: bundle js/ with esbuild into cnn_widgets/static/ so wheels ship the renderer.

Users installing the wheel need no Node. Building from source needs Node/npm (the bundle is
not committed); an editable install without Node only warns, so engine work needs no Node.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js"
BUNDLE = ROOT / "cnn_widgets" / "static" / "explorer.js"


def bundle_is_fresh() -> bool:
    if not BUNDLE.exists():
        return False
    sources = [p for p in (JS / "src").rglob("*.js")] + [JS / "package.json"]
    newest = max((p.stat().st_mtime for p in sources if p.exists()), default=0)
    return BUNDLE.stat().st_mtime >= newest


def build_bundle() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("building cnn_widgets from source needs Node.js and npm to bundle js/ (apt-get install nodejs npm)")
    if not (JS / "node_modules").exists():
        subprocess.run([npm, "ci" if (JS / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"], cwd=JS, check=True)
    subprocess.run([npm, "run", "build"], cwd=JS, check=True)


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if not (JS / "package.json").exists():
            return  # building from an sdist/wheel that already carries the bundle
        if bundle_is_fresh():
            return
        try:
            build_bundle()
        except Exception as exc:  # editable installs for engine work may go on without the renderer
            if version == "editable":
                print(f"cnn_widgets: JS bundle not built ({exc}); the widget will not render until `npm run build` in js/")
                return
            raise
