"""``variants``: do mitigations (KV bias, DyT, TVR, registers) remove them, at what cost?

>>> from mi_massive.analyses.variants import ANALYSIS
>>> ANALYSIS.json_name, sorted(ANALYSIS.commands)
('compare.json', ['compare-variants', 'train-variant'])

``compare_variants`` trains every variant with the same budget and seed and returns a
:class:`VariantComparison` (``compare.json``); ``train_variant`` builds and trains one.
"""

from mi_massive.analyses.variants.command import compare_variants_command, train_variant_command
from mi_massive.analyses.variants.figures import comparison_figure, figures
from mi_massive.analyses.variants.record import VariantComparison, VariantReport
from mi_massive.analyses.variants.run import TrainedVariant, compare_variants, evaluate_variant, train_variant
from mi_massive.core.analysis import Analysis, ReportHooks
from mi_massive.core.html import generic_view

ANALYSIS = Analysis(
    name="variants",
    question="do mitigations (KV bias, DyT, TVR, registers) remove them, at what cost?",
    run=compare_variants,
    record=VariantComparison,
    json_name="compare.json",
    commands={"train-variant": train_variant_command, "compare-variants": compare_variants_command},
    figures=figures,
    report=ReportHooks(section="variants", title="Mitigation variants", view=lambda r: generic_view(r.to_dict()),
                       figures=lambda r: list(figures(r).values())),
)

__all__ = ["ANALYSIS", "TrainedVariant", "VariantComparison", "VariantReport", "compare_variants",
           "compare_variants_command", "comparison_figure", "evaluate_variant", "figures", "train_variant",
           "train_variant_command"]
