"""What every command shares: the error policy, option declarations, input checks, output writing.

Policy: a :class:`MiMassiveError` (bad input, missing package, overflow) prints ``error: <message>``
on one line and exits with code 2; usage errors from typer/click also exit 2; so do errors of the
environment (disk full, read-only or unwritable directory: :data:`mi_massive.core.io.ENVIRONMENT_ERRNOS`).
Anything else is a bug and keeps its traceback. The typer app itself lives in :mod:`mi_massive.cli`,
which registers every analysis' command from :data:`mi_massive.analyses.registry.ANALYSES`.

Every command goes through :func:`user_errors`, which also, before the command body runs, rejects a
non-finite number in any float option (``--abs-threshold nan``, ``--lr inf``) and an empty ``--out``, and
holds ``--out`` for the whole run (:func:`mi_massive.core.io.out_dir_run`: a lock, stale temp files
cleaned, ``mi_massive_manifest.json`` naming the run of every file; a failed run leaves no new empty
directory).
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from mi_massive.errors import MiMassiveError, NumericalOverflowError

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    """Print a one-line error and exit 2."""
    typer.echo(f"error: {message.splitlines()[0] if message else 'failed'}", err=True)
    raise typer.Exit(EXIT_USER_ERROR)


def _flag(func: Callable[..., Any], name: str) -> str:
    """The long flag of parameter ``name`` of a command (``--abs-threshold``)."""
    try:
        default = inspect.signature(func).parameters[name].default
    except (KeyError, ValueError, TypeError):
        default = None
    for decl in getattr(default, "param_decls", None) or ():
        for part in decl.split("/"):
            if part.startswith("--"):
                return part
    return "--" + name.replace("_", "-")


def check_option_values(func: Callable[..., Any], values: dict[str, Any]) -> None:
    """Refuse non-finite numbers in float options and an empty ``--out``, naming the flag.

    >>> def demo(lr: float = 1e-3, sizes: list = None, out=None): ...
    >>> check_option_values(demo, {"lr": float("nan")})
    Traceback (most recent call last):
    ...
    mi_massive.errors.MiMassiveError: --lr must be a finite number, got nan
    >>> check_option_values(demo, {"lr": 0.5, "sizes": [1.0, 2.0], "out": Path("o")})  # fine: returns None
    """
    for name, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise MiMassiveError(f"{_flag(func, name)} must be a finite number, got {item}")
    out = values.get("out")
    if isinstance(out, str) and not out.strip():
        raise MiMassiveError(f"{_flag(func, 'out')} is empty; give a directory ('.' for the current one)")


def _out_run(func: Callable[..., Any], values: dict[str, Any]):
    """Start holding ``--out`` (see :func:`mi_massive.core.io.out_dir_run`), or None when there is none to hold."""
    import click

    from mi_massive.core.io import MANIFEST, OutRun

    out = values.get("out")
    if not isinstance(out, Path) or (out.exists() and not out.is_dir()):
        return None  # no --out, or a file: the command says so
    ctx = click.get_current_context(silent=True)
    name = ctx.info_name if ctx is not None and ctx.info_name else func.__name__.removesuffix("_command")
    run = OutRun(out, name, {k: v for k, v in values.items()}).start()
    if run.removed_temp:
        typer.echo(f"note: removed {len(run.removed_temp)} temp file(s) an interrupted run left in {out}", err=True)
    prev = run.previous or {}
    if prev.get("status") == "running":
        typer.echo(f"note: the previous run in {out} ({prev.get('command')}, {prev.get('run')}) did not finish; "
                   f"{MANIFEST} names the run of every file", err=True)
    return run


def _finish(run, status: str) -> None:
    from mi_massive.core.io import MANIFEST

    if run is None:
        return
    run.finish(status)
    earlier = run.earlier_files() if status == "complete" else []
    if earlier:
        typer.echo(f"note: {run.out} also holds {len(earlier)} file(s) from earlier runs ({', '.join(earlier[:3])}"
                   f"{', ...' if len(earlier) > 3 else ''}); {MANIFEST} names the run of each", err=True)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for commands: turn :class:`MiMassiveError` (and errors of the environment: disk full,
    read-only directory) into a one-line message and exit code 2; check option values first
    (:func:`check_option_values`) and hold ``--out`` for the run (module docstring)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mi_massive.core.io import ENVIRONMENT_ERRNOS, os_error_text

        run = None
        try:
            check_option_values(func, kwargs)
            run = _out_run(func, kwargs)
            result = func(*args, **kwargs)
        except MiMassiveError as err:
            _finish(run, "failed")
            fail(str(err))
        except OSError as err:
            _finish(run, "failed")
            if err.errno not in ENVIRONMENT_ERRNOS:
                raise
            fail(os_error_text(err))
        except KeyboardInterrupt:
            _finish(run, "interrupted")
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
        except typer.Exit as stop:
            _finish(run, "complete" if not stop.exit_code else "incomplete")
            raise
        except BaseException:
            _finish(run, "failed")
            raise
        try:
            _finish(run, "complete")
        except MiMassiveError as err:
            fail(str(err))
        return result

    return wrapper


def ci_text(low: float | None, high: float | None, n: int, *, fmt: str = "{:+.2f}") -> str:
    """A 95% interval as ``[a, b]`` -- or ``n/a (1 sequence)`` when one sequence gives no spread to show.

    >>> ci_text(-1.0, 2.5, 8), ci_text(0.3, 0.3, 1)
    ('[-1.00, +2.50]', 'n/a (1 sequence)')
    """
    if n < 2 or low is None or high is None:
        return f"n/a ({n} sequence{'s' if n != 1 else ''})"
    return f"[{fmt.format(low)}, {fmt.format(high)}]"


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
BosOpt = typer.Option(None, "--prepend-bos/--no-prepend-bos", help="put the BOS token at position 0 (default: "
                      "what the model's tokenizer does -- Llama-2/Gemma/Mistral add it, GPT-2/SmolLM2 do not)")
DtypeOpt = typer.Option("float32", "--dtype", help="float32 (default), bfloat16 or float16")
DeviceOpt = typer.Option(None, "--device", help="cpu, cuda, cuda:<i> or mps (default: CUDA, else MPS, else CPU)")
DeviceMapOpt = typer.Option(None, "--device-map", help="shard over GPUs: auto, balanced, a JSON object or a JSON "
                                                       "file {module: device} (not with --device)")
NDevicesOpt = typer.Option(None, "--n-devices", help="shard over this many GPUs (balanced)")
BatchOpt = typer.Option(8, "--batch-size", help="sequences per forward pass")
AutoBatchOpt = typer.Option(None, "--batch-size", help="sequences per forward pass (default: about 2,048 tokens per pass)")
AbsThresholdOpt = typer.Option(100.0, "--abs-threshold", help="massive: |h| above this ...")
RelThresholdOpt = typer.Option(1000.0, "--rel-threshold", help="... and above this x the layer median")
LayerOpt = typer.Option(None, "--layer", help="block index (0-based); default: the first massive layer (needs a scan)")
DimOpt = typer.Option(None, "--dim", help="residual dim; default: the largest |block output| dim at that layer")
FiguresOpt = typer.Option(True, "--figures/--no-figures", help="write the HTML/PNG figures")
MethodOpt = typer.Option("fast", "--method", help="fast (batched rows, cached residuals, causal shortcuts; the same "
                         "numbers) or naive (one full forward per component, the reference)")
AblationModeOpt = typer.Option("zero", "--mode", help="ablation: zero, mean (reference mean per position class) or "
                               "resample (another sequence's activation; not in sweep)")

# the distributed engine (mi_massive.core.units): `study` and the sharded `sweep`
EngineOpt = typer.Option("auto", "--engine", help="auto (Ray when installed), ray, or local (in this process, "
                         "one unit after another)")
RayAddressOpt = typer.Option(None, "--ray-address", help="run on an existing Ray cluster: auto or HOST:PORT "
                             "(default: start a local Ray on this machine)")
CpusPerTaskOpt = typer.Option(1.0, "--cpus-per-task", help="CPUs (and torch threads) per unit of work")
GpusPerTaskOpt = typer.Option(None, "--gpus-per-task", help="GPUs per unit of work (default: enough to hold 1.2 "
                              "x the model's weights at --dtype; 0 without CUDA or with a non-CUDA --device)")
ShardsOpt = typer.Option(1, "--shards", help="split the layers into this many units of work (Ray tasks with --engine "
                        "ray/auto; the same numbers as one process); resumable per shard")


def check_engine(engine: str, ray_address: Optional[str]) -> str:
    """The engine to use (``--ray-address`` implies Ray); a one-line error for a bad combination."""
    from mi_massive.core.units import ENGINES

    if engine not in ENGINES:
        raise MiMassiveError(f"--engine must be {', '.join(ENGINES[:-1])} or {ENGINES[-1]}, got '{engine}'")
    if ray_address is not None and engine == "local":
        raise MiMassiveError("--ray-address needs the Ray engine (not --engine local)")
    return "ray" if ray_address is not None and engine == "auto" else engine


def _out_path(value: str) -> Path | str:
    """``--out`` as a Path; an empty value stays ``""`` so :func:`check_option_values` can refuse it (typer
    would turn it into ``Path('.')``, the current directory)."""
    return value if not str(value).strip() else Path(value)


def out_option(what: str = "", *, help: str | None = None):
    """The ``--out/-o`` option (required): an output directory holding ``what`` (never empty)."""
    return typer.Option(..., "--out", "-o", help=help or f"output directory ({what})", parser=_out_path)


from mi_massive.core.targets import MAX_INDEX, parse_index_list  # noqa: E402,F401  (the CLI's --layers/--heads lists)


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


def load(model: str, dtype: str, *, device: Optional[str] = None, device_map: Optional[str] = None,
         n_devices: Optional[int] = None):
    """Load the model with two short status lines on stderr: what is loading, and on which device."""
    from mi_massive.core.devices import resolve_placement
    from mi_massive.core.loading import load_model

    resolve_placement(device, device_map, n_devices)  # a bad device fails before anything is read
    typer.echo(f"loading {model} ...", err=True)
    bridge = load_model(model, dtype=dtype, device=device, device_map=device_map, n_devices=n_devices)
    placement = getattr(bridge, "mi_massive_placement", None)
    if placement is not None:
        if placement.note:
            typer.echo(f"note: {placement.note}", err=True)
        typer.echo(placement.line(bridge), err=True)
    from mi_massive.core.loading.random import random_note  # "weights are RANDOM (...)" for random: specs

    if (note := random_note(getattr(bridge, "mi_massive_info", None))) is not None:
        typer.echo(note, err=True)
    return bridge


def make_corpus(model, text: Optional[str], corpus: Optional[str], *, n_samples: int, seq_len: int, seed: int,
                prepend_bos: Optional[bool | str], prepend_bos_source: Optional[str] = None):
    """Exactly one of --text / --corpus, resolved to a :class:`~mi_massive.core.corpus.Corpus`
    (``prepend_bos``: True, False or None/"auto" = what the tokenizer does)."""
    from mi_massive.core.corpus import load_corpus, text_corpus

    if (text is None) == (corpus is None):
        raise MiMassiveError("give exactly one of --text or --corpus")
    check_positive(n_samples=n_samples, seq_len=seq_len)
    if text is not None:
        return text_corpus(model, text, prepend_bos=prepend_bos, prepend_bos_source=prepend_bos_source)
    return load_corpus(model, corpus, n_samples=n_samples, seq_len=seq_len, seed=seed, prepend_bos=prepend_bos,
                       prepend_bos_source=prepend_bos_source)


def announce_bos(model, prepend_bos: Optional[bool | str]):
    """Resolve ``--prepend-bos/--no-prepend-bos`` (None: auto) for ``model``; print the choice once on stderr
    (``BOS: prepended (auto: the tokenizer adds BOS)``) and, for a run against the tokenizer's convention, a
    one-line ``warning:``. Returns the :class:`~mi_massive.core.bos.BosChoice`."""
    import warnings

    from mi_massive.core.bos import BosWarning, resolve_bos

    choice = resolve_bos(model, prepend_bos)
    typer.echo(choice.line(), err=True)
    if (msg := choice.warning()) is not None:
        typer.echo(f"warning: {msg}", err=True)
    warnings.filterwarnings("ignore", category=BosWarning)  # said once above; API calls later in this run repeat it
    return choice


def validate_inputs(model: str, text: Optional[str], corpus: Optional[str], **positive: int) -> None:
    """Cheap checks that must fail before a model is loaded."""
    if (text is None) == (corpus is None):
        raise MiMassiveError("give exactly one of --text or --corpus")
    if text is not None and not text.strip():
        raise MiMassiveError("--text is empty or only whitespace")
    check_positive(**positive)


# ---------------------------------------------------------------------- the shared option groups
@dataclass
class Inputs:
    """The model and corpus options every analysis command shares (declared once, by :func:`command`).

    ``text``/``corpus`` and the drawing options are None for commands built with ``corpus=False``.
    ``prepend_bos``: None (auto) until :meth:`load` resolves it to what the model's tokenizer does (or keeps
    the user's ``--prepend-bos/--no-prepend-bos``); ``prepend_bos_source`` is then ``"auto"`` or ``"user"``.
    """

    model: str
    dtype: str = "float32"
    device: Optional[str] = None
    device_map: Optional[str] = None
    n_devices: Optional[int] = None
    text: Optional[str] = None
    corpus: Optional[str] = None
    n_samples: int = 8
    seq_len: int = 256
    seed: int = 0
    prepend_bos: Optional[bool] = None
    batch_size: Optional[int] = None
    prepend_bos_source: Optional[str] = None

    def check(self, **positive: int) -> None:
        """Cheap checks that must fail before a model is loaded (plus ``positive`` command options)."""
        if self.text is not None or self.corpus is not None or "corpus" in self._groups:
            validate_inputs(self.model, self.text, self.corpus, n_samples=self.n_samples, seq_len=self.seq_len,
                            batch_size=self.batch_size, **positive)
        else:
            check_positive(batch_size=self.batch_size, **positive)
        check_positive(n_devices=self.n_devices)
        from mi_massive.core.devices import resolve_placement
        from mi_massive.core.loading import parse_dtype

        parse_dtype(self.dtype)
        resolve_placement(self.device, self.device_map, self.n_devices)

    def load(self):
        """The model on its device(s), with short status lines on stderr (``device: cpu (auto)``), and the BOS
        choice resolved for it (``self.prepend_bos`` becomes a bool; see :func:`announce_bos`)."""
        bridge = load(self.model, self.dtype, device=self.device, device_map=self.device_map,
                      n_devices=self.n_devices)
        self.resolve_bos(bridge)
        return bridge

    def resolve_bos(self, model) -> bool:
        """Resolve ``--prepend-bos/--no-prepend-bos`` once for ``model`` (printed on stderr); returns the bool."""
        if self.prepend_bos_source is None and getattr(model.cfg, "is_visual_model", False):
            self.prepend_bos, self.prepend_bos_source = False, "images"  # no BOS in an image's token sequence
        if self.prepend_bos_source is None:
            choice = announce_bos(model, self.prepend_bos)
            self.prepend_bos, self.prepend_bos_source = choice.prepend_bos, choice.source
        return bool(self.prepend_bos)

    def make_corpus(self, model):
        """The corpus of ``--text`` or ``--corpus`` for ``model`` (BOS as resolved by :meth:`resolve_bos`)."""
        self.resolve_bos(model)
        return make_corpus(model, self.text, self.corpus, n_samples=self.n_samples, seq_len=self.seq_len,
                           seed=self.seed, prepend_bos=self.prepend_bos, prepend_bos_source=self.prepend_bos_source)

    _groups: tuple[str, ...] = ()


def overflow_hint(message: str, dtype: str) -> str:
    """An overflow message that blames the half-precision run, not the model, when ``--dtype`` is float16/bfloat16.

    >>> overflow_hint("inf/NaN in blocks.2.ln2.hook_normalized at index [0, 0, 0]: the model itself produced "
    ...               "non-finite values", "float16")  # doctest: +ELLIPSIS
    'inf/NaN in blocks.2.ln2.hook_normalized at index [0, 0, 0]: the float16 run overflowed before this hook (float16 max is 65,504...'

    The first non-finite value can surface at a hook the bridge computes in float32 (a norm's output) although
    the overflow happened upstream, in float16; the engine then sees a float32 tensor and blames the model.
    """
    try:
        from mi_massive.core.loading.specs import parse_dtype
        import torch

        dt = parse_dtype(dtype)
    except Exception:  # an unknown dtype never got this far; keep the message
        return message
    if dt not in (torch.float16, torch.bfloat16):
        return message
    name = "float16" if dt == torch.float16 else "bfloat16"
    limit = "float16 max is 65,504" if dt == torch.float16 else "bfloat16 keeps 8 significant bits"
    model_blamed = "the model itself produced non-finite values"
    if model_blamed in message:
        return message.replace(model_blamed, f"the {name} run overflowed before this hook ({limit}; this hook is "
                                             f"computed in float32): rerun with --dtype float32")
    if dt == torch.bfloat16:
        return message.replace("float16 max is 65,504", limit)
    return message


def _option(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def command(*, corpus: bool = True, batch_size: int | None | bool = 8):
    """Decorate an analysis command ``f(inputs: Inputs, **own_options)``: the shared options are added once.

    >>> @command(batch_size=2)
    ... def demo(inputs: Inputs, top: int = 3) -> None:
    ...     print(inputs.model, inputs.batch_size, top)
    >>> {'model', 'corpus', 'device', 'batch_size', 'top'} <= set(inspect.signature(demo).parameters)
    True

    ``corpus=True`` adds ``--text/--corpus/--n-samples/--seq-len/--seed`` (exactly one of text and
    corpus); ``--prepend-bos``, ``--dtype``, ``--device``, ``--device-map``, ``--n-devices`` and
    ``--model`` are always there (the device options go to :func:`mi_massive.load_model`). ``batch_size``: the
    default of ``--batch-size`` (None: chosen from the corpus, about 2,048 tokens per pass; False:
    no such option). Errors follow the policy of :func:`user_errors`.
    """
    shared = [_option("model", ModelOpt, str)]
    if corpus:
        shared += [_option("text", TextOpt, Optional[str]), _option("corpus", CorpusOpt, Optional[str]),
                   _option("n_samples", NSamplesOpt, int), _option("seq_len", SeqLenOpt, int),
                   _option("seed", SeedOpt, int)]
    shared += [_option("prepend_bos", BosOpt, Optional[bool]), _option("dtype", DtypeOpt, str),
               _option("device", DeviceOpt, Optional[str]), _option("device_map", DeviceMapOpt, Optional[str]),
               _option("n_devices", NDevicesOpt, Optional[int])]
    if batch_size is None:
        shared.append(_option("batch_size", AutoBatchOpt, Optional[int]))
    elif batch_size is not False:
        shared.append(_option("batch_size", typer.Option(batch_size, "--batch-size", help=BatchOpt.help), int))
    names = [p.name for p in shared]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(func)  # resolved in the command's own module
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
               for p in list(inspect.signature(func).parameters.values())[1:]]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            inputs = Inputs(**{n: kwargs.pop(n) for n in names})
            inputs._groups = ("corpus",) if corpus else ()
            try:
                return func(inputs, **kwargs)
            except NumericalOverflowError as err:
                hint = overflow_hint(str(err), inputs.dtype)
                if hint == str(err):
                    raise
                raise NumericalOverflowError(hint) from err

        wrapper.__signature__ = inspect.Signature(shared + own)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in shared + own}
        del wrapper.__wrapped__  # typer must read the new signature, not the wrapped one
        return user_errors(wrapper)

    return decorate
