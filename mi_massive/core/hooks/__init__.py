"""Hook factories for causal experiments: ablation, patching, attention edits, residual interventions.

>>> import mi_massive as mm
>>> from mi_massive.core.hooks import ablate_heads
>>> [name for name, _fn in ablate_heads(mm.load_toy("toy-llama"), "L1H0,L1H2")]
['blocks.1.attn.hook_z']

Each factory returns a list of ``(hook name, fn)`` pairs usable with ``run_with_hooks``,
``model.hooks(...)`` and :func:`mi_massive.core.engine.run_capture`; lists compose with ``+``.
Targets (heads, layers, neurons) may be given in any form of :mod:`mi_massive.core.targets`.
Modules: :mod:`.ablation` (heads, attention/MLP sublayers, neurons, patching),
:mod:`.attention` (blocking keys), :mod:`.intervention` (residual entries), :mod:`.types` (``Hook``).
Hook factories run no forward pass: the reference statistics that need one
(:func:`~mi_massive.core.references.reference_means`, ``resample_donors``) live in
:mod:`mi_massive.core.references` and are re-exported here on first use.
"""

from mi_massive.core.hooks.ablation import (
    MODES,
    Patch,
    ablate_attention,
    ablate_heads,
    ablate_mlps,
    ablate_neurons,
    all_heads,
    check_heads,
    check_layers,
    check_mode,
    check_neurons,
    derangement,
    parse_heads,
    patch_hooks,
    per_row_head_ablation,
    replace_hook,
)
from mi_massive.core.hooks.attention import block_keys, renormalised_block
from mi_massive.core.hooks.types import Hook

_REFERENCES = ("reference_means", "resample_donors")


def __getattr__(name: str):
    # reference statistics run forward passes (core.references imports the engine, which imports
    # core.hooks.types): loaded lazily so that importing the hook factories never loads the engine
    if name in _REFERENCES:
        from mi_massive.core import references

        return getattr(references, name)
    raise AttributeError(f"module 'mi_massive.core.hooks' has no attribute '{name}'")


__all__ = [
    "MODES", "Hook", "Patch", "ablate_attention", "ablate_heads", "ablate_mlps", "ablate_neurons", "all_heads",
    "block_keys", "check_heads", "check_layers", "check_mode", "check_neurons", "derangement", "parse_heads",
    "patch_hooks", "per_row_head_ablation", "reference_means", "renormalised_block", "replace_hook",
    "resample_donors",
]
