"""The lecture notebooks run top to bottom, offline, and are committed clean.

* Every notebook in ``notebooks/`` is executed with nbclient in a fresh ``python3`` kernel (the
  kernel spec's ``python`` resolves to this interpreter, i.e. the project's venv), with the working
  directory ``notebooks/`` as a student would have it. Any cell error fails the test. HTTP(S)
  proxies pointing at a closed local port make any accidental download fail fast instead of
  silently working on a machine that happens to be online.
* The committed files carry no execution counts and no (or only tiny) outputs, so what is in git is
  never a stale run; strip them with ``jupyter nbconvert --clear-output --inplace notebooks/*.ipynb``.
* Each run prints its wall-clock time; the target is a few minutes on 2 CPU cores, but a slow
  shared machine must not fail the suite, so a long run only warns.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 900  # generous: a dataset scan on a busy 2-core laptop
TARGET_RUNTIME_S = 300
MAX_COMMITTED_OUTPUT_CHARS = 2_000  # per notebook; "no outputs" is the rule, this allows a stray line

# a closed port on this machine: any HTTP(S) download attempt fails at once
NO_NETWORK = "http://127.0.0.1:9"


def _ids(path: Path) -> str:
    return path.name


def test_the_lecture_notebooks_are_there():
    names = {p.name for p in NOTEBOOKS}
    for expected in (
        "00_quickstart.ipynb",
        "01_why_is_this_a_cat.ipynb",
        "02_visualizing_what_convnets_learn.ipynb",
        "03_inside_a_digits_cnn.ipynb",
        "05_can_we_trust_these_pictures.ipynb",
    ):
        assert expected in names, f"notebooks/{expected} is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel should be python3"
    output_chars = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("execution_count") is None, (
            f"{path.name}, cell {index}: has an execution count (a stale run was committed); "
            "strip it with `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`"
        )
        output_chars += len(json.dumps(cell.get("outputs", [])))
        for output in cell.get("outputs", []):
            assert output.get("execution_count") is None, f"{path.name}, cell {index}: output with an execution count"
    assert output_chars <= MAX_COMMITTED_OUTPUT_CHARS, (
        f"{path.name} carries {output_chars} characters of outputs; commit notebooks without outputs "
        "(`jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_top_to_bottom_offline(path: Path, monkeypatch):
    from nbclient import NotebookClient

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, NO_NETWORK)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and traceback) on the first error
    elapsed = time.perf_counter() - started
    print(f"{path.name}: ran top to bottom in {elapsed:.0f} s")
    errors = [
        (index, output.get("ename"))
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: cells with errors {errors}"
    if elapsed > TARGET_RUNTIME_S:
        warnings.warn(
            f"{path.name} took {elapsed:.0f} s (target: a few minutes on 2 cores); the machine may be busy",
            stacklevel=1,
        )
