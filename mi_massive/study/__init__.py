"""Studies across many models: every (model, analysis) a unit of work on Ray, merged into one table.

>>> from mi_massive.study import study, StudyRecord, load_study
>>> callable(study), StudyRecord.__name__
(True, 'StudyRecord')

See :mod:`mi_massive.study.run` (what a study writes, how it resumes), :mod:`mi_massive.study.units`
(the unit functions) and :mod:`mi_massive.core.units` (the engine: Ray tasks or this process).
"""

from mi_massive.study.record import DepthProfile, HeadShare, ModelRow, StudyRecord, UnitState
from mi_massive.study.run import load_study, merge, study

__all__ = ["DepthProfile", "HeadShare", "ModelRow", "StudyRecord", "UnitState", "load_study", "merge", "study"]
