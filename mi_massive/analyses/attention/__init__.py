"""``attention``: which heads attend to the sink, with what logits and value norms?"""

from mi_massive.analyses.attention.command import attention_command
from mi_massive.analyses.attention.run import AttentionResult, attention_analysis
from mi_massive.core.analysis import Analysis

ANALYSIS = Analysis(
    name="attention",
    question="which heads attend to the sink, with what logits and value norms?",
    run=attention_analysis,
    record=AttentionResult,
    json_name="attention.json",
    commands={"attention": attention_command},
)
