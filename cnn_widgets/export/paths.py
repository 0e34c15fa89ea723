"""The one check of a file that ``save_figure`` and ``export_html`` are about to write.

As ``matplotlib.savefig`` and ``open(path, "w")`` do, a missing folder is refused, never created
behind the user's back (a typo in a folder name would otherwise scatter files); the check runs
before anything is computed, so a refused call changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..engine.errors import OptionError


def output_path(path, what: str, example: str) -> Path:
    """``path`` as a ``Path`` whose folder exists and which is not itself a folder, or an ``OptionError``.

    ``what`` names the call in the message; ``example`` is a file name to suggest (``"figure.png"``).
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)) or not str(path):
        raise OptionError(f"{what} needs a file path (a str or pathlib.Path such as {example!r}), "
                          f"not {type(path).__name__} {path!r:.60}")
    out = Path(path).expanduser()
    if out.is_dir():
        raise OptionError(f"{str(out)!r} is a folder; give {what} a file in it, e.g. {str(out / example)!r}")
    folder = out.parent
    if not folder.is_dir():
        if folder.exists():
            raise OptionError(f"cannot write {out.name!r}: {str(folder)!r} is a file, not a folder; pick a path in a folder")
        raise OptionError(f"cannot write {out.name!r}: the folder {str(folder)!r} does not exist; create it first "
                          f"(e.g. Path({str(folder)!r}).mkdir(parents=True)) or pick a path in an existing folder")
    return out
