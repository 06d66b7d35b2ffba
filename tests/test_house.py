"""The package's house rules, checked on the exported code: modules import each other without cycles and never
import another module's private names, every third-party import is a declared dependency, the code is one
statement per line of at most 120 characters, and the package stays within its budget (lines,
dataclass fields, command-line arguments)."""
from __future__ import annotations

import ast
import json
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "bacgcn"
MODULES = sorted(p for p in PKG.glob("*.py") if p.name not in ("_modidx.py",))


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    "(module imported, names imported from it, line) for every import of a file, at any depth (lazy imports too)."
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: .features -> bacgcn.features
                base = "bacgcn." + base if base else "bacgcn"
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def package_graph() -> dict[str, set[str]]:
    "bacgcn module -> the bacgcn modules it imports."
    names = {p.stem for p in MODULES}
    graph = {}
    for p in MODULES:
        deps = set()
        for mod, what, _ in imports(p):
            if mod == "bacgcn":
                deps |= {w for w in what if w in names}
            elif mod.startswith("bacgcn."):
                deps.add(mod.split(".")[1])
        graph[p.stem] = deps - {p.stem}
    return graph


def test_no_import_cycle():
    graph = package_graph()
    state: dict[str, int] = {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]) if m in path else m)
            if m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])


def test_leaves_stay_leaves():
    "The data-flow order: the metrics import nothing from the package, the text side never imports CLIP, models never the trainer."
    g = package_graph()
    assert g["metrics"] == set() and g["config"] == set() and g["files"] == set() and g["ops"] == set()
    for text_side in ("vocab", "data", "captions", "graph"):
        assert not ({"clip", "features", "model", "train", "pipeline"} & g[text_side]), (text_side, g[text_side])
    for model_side in ("kernel", "gcn", "model", "reso"):
        assert not ({"train", "pipeline", "cli", "experiments"} & g[model_side]), (model_side, g[model_side])
    assert "transformers" not in {m.split(".")[0] for p in MODULES if p.stem != "captioner" for m, _, _ in imports(p)}


def test_no_private_names_across_modules():
    bad = []
    for p in MODULES:
        for mod, what, line in imports(p):
            if mod.startswith("bacgcn") and mod != f"bacgcn.{p.stem}":
                bad += [f"{p.name}:{line} imports {w} from {mod}" for w in what if w.startswith("_") and not w.endswith("__")]
    assert not bad, bad


def test_no_private_attributes_of_other_modules():
    "Nor reaches one through a module object (`from bacgcn import features; features._Photos`)."
    names, bad = {p.stem for p in MODULES}, []
    for p in MODULES:
        tree = ast.parse(p.read_text())
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or node.module == "bacgcn"):
                aliases |= {a.asname or a.name for a in node.names if a.name in names and a.name != p.stem}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname for a in node.names if a.name.startswith("bacgcn.") and a.asname}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                if node.attr.startswith("_") and not node.attr.endswith("__"):
                    bad.append(f"{p.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not bad, bad


# ------------------------------------------------------------------------------------------------ the budget
# What the package may cost a reader: lines of bacgcn/*.py without the generated _modidx.py, fields of the dataclasses,
# arguments of the command line over every subcommand (help and version not counted).
BUDGET = {"lines": 8000, "dataclass fields": 200, "cli arguments": 60}


def package_lines() -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in MODULES}


def dataclass_fields() -> dict[str, int]:
    out = {}
    for p in MODULES:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                (isinstance(d, ast.Name) and d.id == "dataclass")
                or (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "dataclass")
                for d in node.decorator_list
            ):
                out[f"{p.stem}.{node.name}"] = sum(isinstance(s, ast.AnnAssign) for s in node.body)
    return out


def cli_arguments() -> dict[str, int]:
    "{command: arguments}, the top level under ''."
    import argparse

    from bacgcn.cli import build_parser

    out = {}

    def walk(parser, name):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub, sp in a.choices.items():
                    walk(sp, sub)
            elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
                out[name] = out.get(name, 0) + 1

    walk(build_parser(), "")
    return out


@pytest.mark.parametrize("what,count", [("lines", package_lines), ("dataclass fields", dataclass_fields),
                                        ("cli arguments", cli_arguments)], ids=["lines", "fields", "cli"])
def test_within_the_budget(what, count):
    got = count()
    assert sum(got.values()) > {"lines": 3000, "dataclass fields": 50, "cli arguments": 20}[what]  # the count counts
    largest = ", ".join(f"{k} {v}" for k, v in sorted(got.items(), key=lambda kv: -kv[1])[:8])
    assert sum(got.values()) <= BUDGET[what], f"{sum(got.values())} {what} > {BUDGET[what]}; the largest: {largest}"


def test_as_config_comes_from_config():
    bad = [f"{p.name}:{line} ({mod})" for p in MODULES for mod, what, line in imports(p)
           if "as_config" in what and mod not in ("bacgcn.config",)]
    assert not bad, bad


def _declared() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta.get("optional-dependencies", {}).values() for r in extra]
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_every_third_party_import_is_declared():
    dists = md.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    declared = _declared()
    missing = set()
    for p in MODULES:
        for mod, _, _ in imports(p):
            top = mod.split(".")[0]
            if not top or top in stdlib or top == "bacgcn":
                continue
            names = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
            if not names & declared:
                missing.add(f"{top} ({p.name})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_runtime_dependencies_are_needed_at_run_time():
    "Development tools are extras, not dependencies: the package never imports nbdev or jupyter."
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in meta["dependencies"]}
    assert not {"nbdev", "jupyter", "pytest"} & runtime, runtime


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_one_statement_per_line_of_at_most_120_characters(path):
    text = path.read_text()
    lines = text.splitlines()
    generated = set()   # nbdev writes the __all__ list itself
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            generated |= set(range(node.lineno, node.end_lineno + 1))
    long = [i for i, l in enumerate(lines, 1) if len(l) > 120 and i not in generated]
    assert not long, f"{path.name}: lines longer than 120 characters: {long[:10]}"
    seen: dict[int, str] = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.stmt):
            assert node.lineno not in seen, f"{path.name}:{node.lineno}: two statements on one line"
            seen[node.lineno] = type(node).__name__


def test_readme_and_index_list_every_notebook():
    "The notebook tables of README.md and index.ipynb name every notebook, so a reader can find each module."
    names = {p.stem for p in (REPO / "nbs").glob("*.ipynb")} - {"index"}
    index = json.loads((REPO / "nbs" / "index.ipynb").read_text())
    index_text = "".join("".join(c["source"]) for c in index["cells"])
    for where, text in [("README.md", (REPO / "README.md").read_text()), ("index.ipynb", index_text)]:
        missing = sorted(n for n in names if f"`{n}`" not in text)
        assert not missing, f"{where} does not list {missing}"
