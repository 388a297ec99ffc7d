"""The ``mi-massive`` command: every analysis' commands from the registry, plus ``report`` and ``models``.

>>> from mi_massive.cli import app
>>> sorted(c.name for c in app.registered_commands)[:4]
['ablate', 'attention', 'attribute', 'compare-variants']

Commands are thin: they parse options (shared declarations in :mod:`mi_massive.core.cli`), call the
analysis' public function and write its record and figures. Policy: bad input is one ``error:``
line and exit code 2 (:func:`mi_massive.core.cli.user_errors`).
"""

from __future__ import annotations

import sys

import typer

from mi_massive.core.env import quiet_hf

quiet_hf()

from mi_massive.analyses.registry import ANALYSES  # noqa: E402
from mi_massive.core.cli import EXIT_USER_ERROR, echo_table, user_errors  # noqa: E402
from mi_massive.errors import MiMassiveError  # noqa: E402
from mi_massive.report.command import report_command  # noqa: E402
from mi_massive.study.command import study_command  # noqa: E402

app = typer.Typer(
    name="mi-massive",
    help="Massive activations and attention sinks in transformer LMs (TransformerLens hook points).",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help text: option docs contain colons (e.g. logit_diff:A:B) that rich turns into emoji
)


@user_errors
def models_command() -> None:
    """List model aliases, toy models and whether each can be loaded here."""
    from mi_massive.core.loading import list_models

    rows = []
    for m in list_models():
        status = "installed" if m["installed"] else f"missing: {m['install']}"
        rows.append([m["name"], status, m["description"]])
    echo_table(["name", "status", "description"], rows)
    typer.echo("also accepted: a .gguf path, a Hugging Face model directory, or a hub name (online)")


for _analysis in ANALYSES:
    for _name, _command in _analysis.commands.items():
        app.command(_name)(_command)
app.command("report")(report_command)
app.command("study")(study_command)
app.command("models")(models_command)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except MiMassiveError as err:  # raised outside a decorated command (e.g. option parsing callbacks)
        typer.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USER_ERROR)


__all__ = ["app", "main"]
