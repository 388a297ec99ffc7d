"""``attention``: which heads attend to the sink, with what logits and value norms?"""

from mi_massive.analyses.attention.command import attention_command
from mi_massive.analyses.attention.figures import figures
from mi_massive.analyses.attention.record import AttentionResult
from mi_massive.analyses.attention.run import attention, attention_analysis
from mi_massive.core.analysis import Analysis

ANALYSIS = Analysis(
    name="attention",
    question="which heads attend to the sink, with what logits and value norms?",
    run=attention,
    record=AttentionResult,
    json_name="attention.json",
    commands={"attention": attention_command},
    figures=figures,
)

__all__ = ["ANALYSIS", "AttentionResult", "attention", "attention_analysis"]
