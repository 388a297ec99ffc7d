"""``mi-massive`` command line: thin shells over the library (each command lives in its own module)."""

from __future__ import annotations

from mi_massive.cli.app import app, main  # noqa: F401
from mi_massive.cli import models as _models  # noqa: F401  (registers commands)
from mi_massive.cli import scan as _scan  # noqa: F401
from mi_massive.cli import attention as _attention  # noqa: F401
from mi_massive.cli import report as _report  # noqa: F401
from mi_massive.cli import intervene as _intervene  # noqa: F401
from mi_massive.cli import mlp as _mlp  # noqa: F401
from mi_massive.cli import svd as _svd  # noqa: F401
from mi_massive.cli import tokens as _tokens  # noqa: F401

__all__ = ["app", "main"]
from mi_massive.cli import variants as _variants  # noqa: F401
from mi_massive.cli import heads as _heads  # noqa: F401,E402
from mi_massive.cli import ablate as _ablate  # noqa: F401,E402
from mi_massive.cli import attribute as _attribute  # noqa: F401,E402
from mi_massive.cli import patch as _patch  # noqa: F401,E402
