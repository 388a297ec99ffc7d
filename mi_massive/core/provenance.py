"""Provenance of a result: which model, corpus, seed, options and package versions produced it.

>>> import mi_massive as mm
>>> model = mm.load_toy("toy-llama")
>>> record = provenance(model, mm.text_corpus(model, "hi", prepend_bos=True), options={"k": 1})
>>> sorted(record)
['corpus', 'created_utc', 'device', 'model', 'options', 'seed', 'versions']
>>> record["device"]["type"]
'cpu'

Kept apart from :mod:`mi_massive.core.io` (plain file writing) because it reads model information
from :mod:`mi_massive.core.loading`, which itself loads saved variants through ``core.io``.
"""

from __future__ import annotations

from typing import Any

from mi_massive.core.devices import device_record
from mi_massive.core.io import package_versions, utc_now
from mi_massive.core.loading.bridge import model_info


def provenance(model, corpus=None, *, seed: int | None = None, options: dict[str, Any] | None = None,
               command: str | None = None) -> dict[str, Any]:
    """What produced a result: model (spec, fingerprint, shape), device, corpus, seed, options, versions, UTC time.

    ``device`` is :func:`mi_massive.core.devices.device_record`: type, device, device map, GPU name and
    memory (or the CPU's platform name), torch and CUDA versions.
    """
    record: dict[str, Any] = {"model": model_info(model).to_dict(), "device": device_record(model)}
    if corpus is not None:
        record["corpus"] = corpus.describe()
    record["seed"] = seed if seed is not None else (corpus.seed if corpus is not None else None)
    record["options"] = dict(options or {})
    if command:
        record["command"] = command
    record["versions"] = package_versions()
    record["created_utc"] = utc_now()
    return record
