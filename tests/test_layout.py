"""The package layout, checked statically (ast and regexes over ``mi_massive/**/*.py``; nothing is imported).

* no import cycle between modules (every import counts, including the ones inside functions);
* ``core`` (``mi_massive/core/**`` and ``errors.py``) imports no analysis, report, CLI or training code;
* an analysis (``mi_massive/analyses/<name>/``) imports neither the report nor the CLI (nor the
  ``mi_massive`` face modules);
* one of each: hook names are built only in ``core/names.py``; bootstraps live in ``core/stats.py``
  and the token NLL in ``core/stats.py``; a CLI option (``--n-samples``, ...) is
  declared by one module.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "mi_massive"
FACES = {"mi_massive", "mi_massive.figures"}  # the public API modules: import everything, imported by nothing inside


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def rel(name: str) -> str:
    return str(MODULES[name].relative_to(REPO))


@lru_cache(maxsize=None)
def tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(encoding="utf-8"), filename=str(MODULES[name]))


def _known(dotted: str) -> str | None:
    """The longest prefix of ``dotted`` that is a module of the package."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return None


def imports(name: str) -> list[tuple[str, int]]:
    """(imported package module, line) for every import of module ``name``, at any depth (functions too)."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub; `from mod import name` imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            module = _known(target) if target.split(".")[0] == "mi_massive" else None
            if module is not None and module != name:
                found.append((module, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    return {name: {t for t, _ in imports(name)} for name in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def cycle_path(edges: dict[str, set[str]], comp: list[str]) -> str:
    """One concrete loop inside a strongly connected component, for the failure message."""
    members, start = set(comp), comp[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(w for w in edges[path[-1]] if w in members)
        back = [w for w in nxt if w in seen]
        if back:
            loop = path[path.index(back[0]):] + [back[0]]
            return " -> ".join(loop)
        path.append(nxt[0])
        seen.add(nxt[0])


def violations(sources: callable, trees: tuple[str, ...] = (), exact: tuple[str, ...] = ()) -> list[str]:
    """Imports by modules that pass ``sources`` of a module inside one of ``trees`` or equal to one of ``exact``."""
    bad = []
    for name in MODULES:
        if not sources(name):
            continue
        for target, line in imports(name):
            if target in exact or any(target == t or target.startswith(t + ".") for t in trees):
                bad.append(f"{rel(name)}:{line} imports {target}")
    return bad


def is_core(name: str) -> bool:
    return name == "mi_massive.errors" or name.startswith("mi_massive.core.") or name == "mi_massive.core"


def is_analysis(name: str) -> bool:
    return name.startswith("mi_massive.analyses.") and name != "mi_massive.analyses.registry"


# ------------------------------------------------------------------------------------ the checker itself
def test_checker_sees_every_kind_of_import():
    edges = graph()
    assert "mi_massive.analyses.scan" in edges["mi_massive.analyses.registry"]  # from pkg import sub
    assert "mi_massive.core.analysis" in edges["mi_massive.analyses.registry"]  # from mod import name
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycle_path({"a": {"b"}, "b": {"a"}}, ["a", "b"]) == "a -> b -> a"


def test_imports_inside_functions_count():
    # scan's command imports its run module inside the function body
    lazy = {t for t, _ in imports("mi_massive.analyses.scan.command")}
    assert "mi_massive.analyses.scan.run" in lazy or "mi_massive.analyses.scan.figures" in lazy


# ------------------------------------------------------------------------------------ import structure
def test_no_import_cycles():
    edges = graph()
    found = [cycle_path(edges, comp) for comp in cycles(edges)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_core_imports_no_analysis_report_cli_or_training():
    bad = violations(is_core, ("mi_massive.analyses", "mi_massive.report", "mi_massive.cli", "mi_massive.training"),
                     tuple(FACES))
    assert not bad, "core must not depend on what is built on it:\n" + "\n".join(bad)


def test_analyses_import_neither_report_nor_cli():
    bad = violations(is_analysis, ("mi_massive.report", "mi_massive.cli"), tuple(FACES))
    assert not bad, "an analysis must not import the report, the CLI or the public face:\n" + "\n".join(bad)


def test_nothing_inside_imports_the_public_face():
    bad = violations(lambda name: name not in FACES, exact=tuple(FACES))
    assert not bad, "modules import where things are defined, not mi_massive / mi_massive.figures:\n" + "\n".join(bad)


def test_analysis_folders_are_complete_and_registered():
    registry = tree("mi_massive.analyses.registry")
    registered = {n.value.id for n in ast.walk(registry)
                  if isinstance(n, ast.Attribute) and n.attr == "ANALYSIS" and isinstance(n.value, ast.Name)}
    folders = {p.parent.name for p in (PKG / "analyses").glob("*/__init__.py")}
    assert folders == registered, f"folders {sorted(folders ^ registered)} are not (or no longer) in the registry"
    for folder in folders:
        init = tree(f"mi_massive.analyses.{folder}")
        assigned = {t.id for n in ast.walk(init) if isinstance(n, ast.Assign) for t in n.targets
                    if isinstance(t, ast.Name)}
        assert "ANALYSIS" in assigned, f"mi_massive/analyses/{folder}/__init__.py defines no ANALYSIS"
        assert (PKG / "analyses" / folder / "run.py").is_file(), f"analyses/{folder} has no run.py"


# ------------------------------------------------------------------------------------ one of each
HOOK_FSTRING = re.compile(r"""\bf["']blocks\.\{|["']blocks\.["']\s*\+|["']blocks\.%d""")
BOOTSTRAP_DEF = re.compile(r"^\s*def\s+\w*bootstrap\w*\s*\(", re.M)
NLL_CODE = re.compile(r"log_softmax[\s\S]{0,200}?\.gather\(|\bcross_entropy\(|\bnll_loss\(")
NLL_HOMES = {"mi_massive/core/stats.py"}


def _grep(pattern: re.Pattern, skip: set[str]) -> list[str]:
    hits = []
    for name, path in MODULES.items():
        if rel(name) in skip:
            continue
        text = path.read_text(encoding="utf-8")
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            hits.append(f"{rel(name)}:{line}: {text.splitlines()[line - 1].strip()[:100]}")
    return hits


def test_checks_match_what_they_should():
    assert HOOK_FSTRING.search('names = [f"blocks.{l}.hook_resid_post" for l in layers]')
    assert not HOOK_FSTRING.search('"""``blocks.{layer}.hook_resid_post``"""')
    assert BOOTSTRAP_DEF.search("def r2_bootstrap_ci(x, y):")
    assert NLL_CODE.search("logp = logits.log_softmax(-1)\n    nll = -logp.gather(-1, ids)")


def test_hook_names_are_built_only_in_core_names():
    hits = _grep(HOOK_FSTRING, {"mi_massive/core/names.py"})
    assert not hits, "build hook names with mi_massive.core.names.act_name:\n" + "\n".join(hits)


def test_one_bootstrap():
    hits = _grep(BOOTSTRAP_DEF, {"mi_massive/core/stats.py"})
    assert not hits, "bootstraps live in mi_massive/core/stats.py:\n" + "\n".join(hits)


def test_one_nll():
    hits = _grep(NLL_CODE, NLL_HOMES)
    assert not hits, f"token NLLs live in {sorted(NLL_HOMES)}:\n" + "\n".join(hits)


def option_flags() -> dict[str, set[str]]:
    """CLI flag (``--n-samples``) -> modules whose ``typer.Option(...)`` / ``typer.Argument(...)`` declare it."""
    found: dict[str, set[str]] = defaultdict(set)
    for name in MODULES:
        for node in ast.walk(tree(name)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Option"):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                        for flag in arg.value.split("/"):
                            found[flag].add(rel(name))
    return found


# Flags that recur across commands with a DIFFERENT meaning, so one shared declaration would be wrong. Each entry says
# why; anything not listed here that is declared in two modules must move to mi_massive/core/cli.py.
DIFFERENT_MEANING = {
    "--text": "attention: the one text whose patterns are drawn (required, no --corpus); elsewhere one sequence of the corpus",
    "--corpus": "intervene: the evaluation text, paired with --calib-corpus; elsewhere the analysed corpus",
    "--n-samples": "intervene: evaluation chunks (with --n-calib); elsewhere sequences drawn",
    "--seq-len": "intervene: tokens per evaluation chunk; variants: tokens per training window",
    "--seed": "variants: seed of base weights, new parameters and batches",
    "--batch-size": "variants: windows per optimiser step; elsewhere sequences per forward pass",
    "--top-k": "scan: values kept per layer; heads: rows shown; ablate: heads ablated; mlp: neurons listed",
    "--heads": "ablate: a head set to remove; attention: head indices to draw",
    "--layer": "attribute: block of the entry; intervene: block to edit; mlp/svd/tokens share core.cli.LayerOpt",
    "--dim": "attribute: default is the scan's top massive dim; mlp/svd share core.cli.DimOpt (largest |h| dim)",
    "--n-boot": "svd: resamples of the R^2 CI (1000); tokens: of the effect-size CIs (2000)",
    "--variants": "intervene: 'one'/'every' edit layers; compare-variants: mitigation variant names",
}


def test_shared_options_are_declared_only_in_core_cli():
    flags = option_flags()
    shared = {f for f, where in flags.items() if "mi_massive/core/cli.py" in where}
    assert {"--model", "--n-samples", "--seq-len", "--corpus", "--out", "--figures"} <= shared
    bad = [f"{flag}: also declared in {sorted(flags[flag] - {'mi_massive/core/cli.py'})}" for flag in sorted(shared)
           if flags[flag] - {"mi_massive/core/cli.py"} and flag not in DIFFERENT_MEANING]
    assert not bad, "use the shared option of mi_massive.core.cli (the @command decorator):\n" + "\n".join(bad)


def test_no_option_declared_twice():
    repeated = {flag: sorted(where) for flag, where in option_flags().items()
                if len(where) > 1 and flag not in DIFFERENT_MEANING}
    assert not repeated, "declare a repeated option once in mi_massive/core/cli.py:\n" + "\n".join(
        f"{flag}: {where}" for flag, where in sorted(repeated.items()))
