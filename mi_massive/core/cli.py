"""What every command shares: the error policy, option declarations, input checks, output writing.

Policy: a :class:`MiMassiveError` (bad input, missing package, overflow) prints ``error: <message>``
on one line and exits with code 2; usage errors from typer/click also exit 2. Anything else is a bug
and keeps its traceback. The typer app itself lives in :mod:`mi_massive.cli`, which registers every
analysis' command from :data:`mi_massive.analyses.registry.ANALYSES`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import typer

from mi_massive.errors import MiMassiveError

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


# ---------------------------------------------------------------------- shared options
ModelOpt = typer.Option(..., "--model", "-m", help="alias (smollm2-135m, toy-gpt2, toy-llama), .gguf path, HF dir or hub name")
TextOpt = typer.Option(None, "--text", help="a single text to analyse (one sequence)")
CorpusOpt = typer.Option(None, "--corpus", help="'builtin', 'wikitext-2[:test|valid]' or a UTF-8 text file")
NSamplesOpt = typer.Option(8, "--n-samples", help="number of sequences drawn from the corpus")
SeqLenOpt = typer.Option(256, "--seq-len", help="tokens per sequence (including BOS)")
SeedOpt = typer.Option(0, "--seed", help="seed for drawing sequences (and any randomness)")
BosOpt = typer.Option(False, "--prepend-bos/--no-prepend-bos", help="put the BOS token at position 0")
DtypeOpt = typer.Option("float32", "--dtype", help="float32 (default), bfloat16 or float16")
BatchOpt = typer.Option(8, "--batch-size", help="sequences per forward pass")
AutoBatchOpt = typer.Option(None, "--batch-size", help="sequences per forward pass (default: about 2,048 tokens per pass)")
AbsThresholdOpt = typer.Option(100.0, "--abs-threshold", help="massive: |h| above this ...")
RelThresholdOpt = typer.Option(1000.0, "--rel-threshold", help="... and above this x the layer median")


def parse_index_list(value: Optional[str], option: str) -> list[int] | None:
    """``"5"``, ``"5,11"``, ``"0-3,7"`` -> sorted unique ints; None stays None."""
    if value is None:
        return None
    out: set[int] = set()
    for part in value.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                out.update(range(lo_i, hi_i + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise MiMassiveError(f"{option} expects integers or ranges like 0-3,7; got '{value}'") from None
    if not out:
        raise MiMassiveError(f"{option} is empty")
    return sorted(out)


def write_outputs(out, json_name: str, record, figures: dict | None = None) -> list:
    """Save ``record`` as ``OUT/json_name`` and each figure (built lazily by a no-argument callable) as
    ``OUT/<name>.html`` (+ ``.png`` when possible); print what was written and return the paths."""
    from mi_massive.core.html import save_figure

    record.save(out / json_name)
    written = [out / json_name]
    for name, build in (figures or {}).items():
        written += save_figure(build(), out / name)
    typer.echo("wrote " + ", ".join(str(p) for p in written))
    return written


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise MiMassiveError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def load(model: str, dtype: str):
    """Load the model with a short status line on stderr."""
    from mi_massive.core.loading import load_model

    typer.echo(f"loading {model} ...", err=True)
    return load_model(model, dtype=dtype)


def make_corpus(model, text: Optional[str], corpus: Optional[str], *, n_samples: int, seq_len: int, seed: int,
                prepend_bos: bool):
    """Exactly one of --text / --corpus, resolved to a :class:`~mi_massive.core.corpus.Corpus`."""
    from mi_massive.core.corpus import load_corpus, text_corpus

    if (text is None) == (corpus is None):
        raise MiMassiveError("give exactly one of --text or --corpus")
    check_positive(n_samples=n_samples, seq_len=seq_len)
    if text is not None:
        return text_corpus(model, text, prepend_bos=prepend_bos)
    return load_corpus(model, corpus, n_samples=n_samples, seq_len=seq_len, seed=seed, prepend_bos=prepend_bos)


def validate_inputs(model: str, text: Optional[str], corpus: Optional[str], **positive: int) -> None:
    """Cheap checks that must fail before a model is loaded."""
    if (text is None) == (corpus is None):
        raise MiMassiveError("give exactly one of --text or --corpus")
    if text is not None and not text.strip():
        raise MiMassiveError("--text is empty or only whitespace")
    check_positive(**positive)
