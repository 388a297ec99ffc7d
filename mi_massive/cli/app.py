"""The typer app, shared option types and the error policy of every command.

Policy: a :class:`MiMassiveError` (bad input, missing package, overflow) prints ``error: <message>``
on one line and exits with code 2; usage errors from typer/click also exit 2. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import typer

from mi_massive._env import quiet_hf
from mi_massive.errors import MiMassiveError

quiet_hf()

app = typer.Typer(
    name="mi-massive",
    help="Massive activations and attention sinks in transformer LMs (TransformerLens hook points).",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help text: option docs contain colons (e.g. logit_diff:A:B) that rich turns into emoji
)

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    """Print a one-line error and exit 2."""
    typer.echo(f"error: {message.splitlines()[0] if message else 'failed'}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for commands: turn :class:`MiMassiveError` into a one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MiMassiveError as err:
            fail(str(err))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


def echo_table(header: list[str], rows: list[list[Any]]) -> None:
    """Print a plain, aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, row in enumerate(cells):
        typer.echo("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if j == 0:
            typer.echo("  ".join("-" * w for w in widths))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except MiMassiveError as err:  # raised outside a decorated command (e.g. option parsing callbacks)
        typer.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USER_ERROR)
