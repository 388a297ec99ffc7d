"""``mi-massive models``: list aliases and whether they are installed."""

from __future__ import annotations

import typer

from mi_massive.cli.app import app, echo_table, user_errors


@app.command("models")
@user_errors
def models_command() -> None:
    """List model aliases, toy models and whether each can be loaded here."""
    from mi_massive.loading import list_models

    rows = []
    for m in list_models():
        status = "installed" if m["installed"] else f"missing: {m['install']}"
        rows.append([m["name"], status, m["description"]])
    echo_table(["name", "status", "description"], rows)
    typer.echo("also accepted: a .gguf path, a Hugging Face model directory, or a hub name (online)")
