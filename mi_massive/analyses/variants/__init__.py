"""``variants``: do mitigations (KV bias, DyT, TVR, registers) remove them, at what cost?"""

from mi_massive.analyses.variants.command import (
    compare_variants_command,
    train_variant_command,
)
from mi_massive.analyses.variants.run import VariantReport, compare_variants
from mi_massive.core.analysis import Analysis, ReportHooks
from mi_massive.core.html import generic_view
from mi_massive.core.io import read_json

ANALYSIS = Analysis(
    name="variants",
    question="do mitigations (KV bias, DyT, TVR, registers) remove them, at what cost?",
    run=compare_variants,
    record=VariantReport,
    json_name="compare.json",
    commands={"train-variant": train_variant_command, "compare-variants": compare_variants_command},
    report=ReportHooks(section="variants", title="Mitigation variants", view=generic_view, filename="variants.json",
                       load=read_json),
)
