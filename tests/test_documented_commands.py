"""Every `bacgcn ...` command that README.md, experiments/README.md and the notebooks show is one that works: it
parses with the command's own parser, and what it sets resolves as the command resolves it before doing any work.

A documented command with a renamed flag, a removed subcommand, an unknown `-s` setting or `-p` parameter, or a
value the config refuses is the first thing a new user runs into. Each command is parsed (`bacgcn.cli.build_parser`)
and then taken as far as the command goes before it reads data: `extract` / `train` build their `ExperimentConfig`
(`bacgcn.experiments.experiment_config`, every section checked), `run` checks its notebook's parameters and config
(`bacgcn.experiments.check_run`), `evaluate`, `captions` and `caption` check their settings, `check-data` its
protocol. Paths in the documentation are placeholders and are never read."""

import inspect
import json
import re
import shlex
from pathlib import Path

import pytest

from bacgcn.captions import CaptionConfig
from bacgcn.cli import build_parser, settings
from bacgcn.config import as_config
from bacgcn.experiments import check_run, experiment_config, parse_params
from bacgcn.pipeline import evaluate_checkpoint
from bacgcn.protocols import get_protocol, resolve_data

REPO = Path(__file__).resolve().parents[1]
SHELL = {"", "sh", "bash", "shell", "console"}


def _markdown_sources():
    for path in [REPO / "README.md", REPO / "experiments" / "README.md"]:
        yield path.relative_to(REPO).as_posix(), path.read_text()
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


def resolve(args: list[str]) -> str:
    "Parse `bacgcn ARGS` and resolve its settings as the command does before any work; returns the command name."
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as e:
        raise AssertionError(f"does not parse (exit {e.code})") from None
    if ns.command in ("extract", "train"):
        ns.config = None  # a documented config file is a placeholder: the flags and -s settings are checked
        experiment_config(**settings(ns))
    elif ns.command == "run":
        check_run(ns.experiment, parse_params(ns.param), ns.out)
    elif ns.command == "evaluate":
        known = set(inspect.signature(evaluate_checkpoint).parameters) - {"checkpoint", "spec", "split", "backbone"}
        if unknown := sorted(set(parse_params(ns.set)) - known):
            raise ValueError(f"evaluate has no setting {unknown}; settings: {sorted(known)}")
        resolve_data(ns.protocol, ns.data_root)
    elif ns.command == "captions":
        as_config(CaptionConfig, parse_params(ns.set) or None)
    elif ns.command == "caption":
        from bacgcn.captioner import CaptionerConfig

        s = {k: v for k, v in parse_params(ns.set).items() if not (ns.merge and k in ("allow_failed", "overwrite"))}
        as_config(CaptionerConfig, s or None)
    elif ns.command == "check-data":
        get_protocol(ns.protocol)
    assert callable(ns.func)
    return ns.command


def test_the_documentation_shows_commands():
    sources = {src for src, _ in COMMANDS}
    assert {"README.md", "experiments/README.md", "23_cli.ipynb"} <= sources, sources
    assert len(COMMANDS) >= 15, COMMANDS
    shown = {args[0] for _, args in COMMANDS}
    assert {"train", "run", "evaluate", "predict", "check-data"} <= shown, shown


@pytest.mark.parametrize("src,args", COMMANDS, ids=[f"{s}:{' '.join(a[:2])}" for s, a in COMMANDS])
def test_documented_command_works(src, args):
    try:
        resolve(args)
    except (AssertionError, ValueError, KeyError, TypeError, FileNotFoundError) as e:
        raise AssertionError(f"{src}: `bacgcn {shlex.join(args)}`: {e}") from None


@pytest.mark.parametrize(
    "args,what",
    [
        (["train", "--protocol", "voc2007", "--clip-model", "ViT-B-16"], "does not parse"),
        (["captions", "score", "--captions", "a.json", "--vocab", "voc2007"], "does not parse"),
        (["train", "--protocol", "voc2007", "-s", "train.epoch=3"], "unknown TrainConfig fields"),
        (["extract", "--protocol", "voc2007", "-s", "clip.geometry=pad"], "geometry='pad'"),
        (["train", "--protocol", "voc2007", "-s", "data.trainsplit=x"], "unknown data fields"),
        (["run", "run", "-p", "protocol", "voc2007", "-p", "captions_dir", "x"], "has no parameter captions_dir"),
        (["run", "run", "-p", "config.train.model.kernel.top_k", "4"], "unknown ModelConfig fields"),
        (["run", "ablation", "-p", "config.features.dtype", "int4"], "dtype"),
        (["run", "report", "-p", "results", "x"], "has no parameter results"),
        (["evaluate", "--checkpoint", "m.pt", "--protocol", "voc2007", "--data-root", "d", "-s", "cach=x"], "cach"),
        (["captions", "--captions", "a.json", "--vocab", "voc2007", "--out", "d", "-s", "votes=2"], "votes"),
        (["check-data", "voc2008", "--data-root", "d"], "unknown protocol"),
    ],
)
def test_a_wrong_command_is_caught(args, what):
    "The check above fails on what a user would trip over (so that it cannot pass whatever the documentation says)."
    with pytest.raises((AssertionError, ValueError, TypeError), match=re.escape(what)):
        resolve(args)
