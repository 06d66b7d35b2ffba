"""Every `bacgcn ...` command that the README files and the notebooks show is one the parser accepts.

A documented command that no longer parses (a renamed flag, a removed subcommand) is the first thing a new user
runs into; this test reads the shell blocks of the documentation and parses each command without running it."""

import json
import re
import shlex
from pathlib import Path

import pytest

from bacgcn.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
SHELL = {"", "sh", "bash", "shell", "console"}


def _markdown_sources():
    for path in [REPO / "README.md", REPO / "experiments" / "README.md"]:
        yield path.name if path.parent == REPO else f"experiments/{path.name}", path.read_text()
    for nb in sorted((REPO / "nbs").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        yield nb.name, "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _shell_blocks(text: str):
    "The contents of the fenced blocks of `text` whose language is a shell (or not given)."
    block, lang = None, None
    for line in text.splitlines():
        fence = re.match(r"^\s*```\s*(\w*)", line)
        if fence and block is None:
            block, lang = [], fence.group(1)
        elif fence:
            if lang in SHELL:
                yield "\n".join(block)
            block = None
        elif block is not None:
            block.append(line.strip())


def _commands(text: str):
    "`bacgcn` argument lists in the shell blocks of `text` (continuation lines joined, comments dropped)."
    for block in _shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip().removeprefix("$ ")
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line)
            for k, w in enumerate(words):
                if w == "bacgcn" and (k == 0 or words[k - 1] == "-m"):
                    args = words[k + 1 :]
                    cut = next((i for i, a in enumerate(args) if a in ("&&", "|", ";", ">", "2>&1")), len(args))
                    yield args[:cut]
                    break


COMMANDS = [
    (src, args)
    for src, text in _markdown_sources()
    for args in _commands(text)
    if args and not {"-h", "--help", "--version"} & set(args)  # these print and exit by design
]


def test_the_documentation_shows_commands():
    sources = {src for src, _ in COMMANDS}
    assert {"README.md", "experiments/README.md", "26_cli.ipynb"} <= sources, sources
    assert len(COMMANDS) >= 15, COMMANDS


@pytest.mark.parametrize("src,args", COMMANDS, ids=[f"{s}:{' '.join(a[:2])}" for s, a in COMMANDS])
def test_documented_command_parses(src, args):
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as e:
        raise AssertionError(f"{src}: `bacgcn {' '.join(args)}` does not parse (exit {e.code})") from None
    assert callable(ns.func)
