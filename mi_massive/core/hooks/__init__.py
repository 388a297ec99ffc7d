"""Hook factories for causal experiments: ablation, patching, attention edits.

Each factory returns a list of ``(hook name, fn)`` pairs usable with ``run_with_hooks``,
``model.hooks(...)`` and :func:`mi_massive.core.engine.run_capture`; lists compose with ``+``.
Modules: :mod:`.ablation` (heads, attention/MLP sublayers, neurons, patching),
:mod:`.attention` (blocking keys). Further modules (e.g. residual interventions) add their exports here.
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
    check_neurons,
    check_mode,
    derangement,
    parse_heads,
    patch_hooks,
    per_row_head_ablation,
    reference_means,
    replace_hook,
    resample_donors,
)
from mi_massive.core.hooks.attention import block_keys, renormalised_block

__all__ = [
    "MODES", "Patch", "ablate_attention", "ablate_heads", "ablate_mlps",
    "ablate_neurons", "all_heads", "block_keys", "check_heads", "check_layers", "check_neurons", "check_mode", "derangement",
    "parse_heads", "patch_hooks", "per_row_head_ablation", "reference_means", "renormalised_block",
    "replace_hook", "resample_donors",
]
