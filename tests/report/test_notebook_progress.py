"""Notebooks show progress bars as widgets: the package's bars come from ``tqdm.auto``, which picks the
ipywidgets bar inside a Jupyter kernel (ipywidgets is in the dev extras).

A real kernel of this venv's Python (nbclient, a kernelspec in a temporary directory, as
``tests/test_notebooks.py`` does) runs a scan of a toy model in four batches and must emit a widget
(``application/vnd.jupyter.widget-view+json``), not text bars on stderr.
"""

from __future__ import annotations

import json
import sys

import pytest

CELL = """
import mi_massive as mm
model = mm.load_toy("toy-llama", plant=[(1, 5, 3000.0)])
corpus = mm.text_corpus(model, ["The cat sat.", "A dog ran.", "Birds fly high.", "Fish swim."], prepend_bos=True)
result = mm.scan(model, corpus, batch_size=1, progress=True)
print("massive entries:", len(result.massive))
"""


def test_package_bars_are_widgets_in_a_notebook(tmp_path):
    pytest.importorskip("ipywidgets")
    nbclient = pytest.importorskip("nbclient")
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = tmp_path / "kernels" / "mi-massive-venv"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mi_massive venv", "language": "python",
        "env": {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}}))
    ksm = KernelSpecManager(kernel_dirs=[str(spec.parent)])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    client = nbclient.NotebookClient(nb, km=KernelManager(kernel_name="mi-massive-venv", kernel_spec_manager=ksm),
                                     timeout=300, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = nb.cells[0].outputs
    widgets = [o for o in outputs if o.get("output_type") == "display_data"
               and "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert widgets, f"no progress widget; outputs: {[o.get('output_type') for o in outputs]} {text[-500:]!r}"
    assert "massive entries: 8" in text               # dim 5 at position 0 of 4 sequences, blocks 1 and 2
    assert "it/s]" not in text and "seq/s]" not in text  # no text bar next to the widget
