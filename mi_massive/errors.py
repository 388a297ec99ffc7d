"""User-facing errors.

Every problem caused by the user's input (unknown model, bad corpus, bad option) raises
:class:`MiMassiveError`. The CLI turns it into a one-line message and exit code 2; library users
catch it like any other exception. Internal bugs stay ordinary exceptions so they are not hidden.
"""


class MiMassiveError(Exception):
    """An error the user can fix; ``str(err)`` is a complete one-line explanation."""


class NumericalOverflowError(MiMassiveError):
    """inf or NaN appeared in an activation, e.g. a residual above the float16 maximum (65,504)."""
