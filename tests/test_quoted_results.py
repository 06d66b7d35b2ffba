"""Every number that README.md and the notebooks quote from `results/` equals the committed result file it comes from.

The quotes are listed explicitly below (file, the text around the numbers as a pattern, where each number comes
from). A quote whose text is no longer found fails (its text changed: update its entry), so the list cannot go
stale silently; and every decimal number of README.md's "Results" section must be one of the listed quotes or one
of the paper's own numbers, so a new quote cannot be added without an entry. The result files are read when the
test runs: results that are regenerated are checked as they are then."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUM = r"([−+-]?\d+(?:\.\d+)?)"  # one quoted number (a typographic minus counts as a minus)


def results(rel: str):
    "A committed result file, read now."

    def get(*keys):
        d = json.loads((REPO / "results" / rel).read_text(encoding="utf-8"))
        for k in keys:
            d = d[k]
        return d

    return get


study, captions = results("study/metrics.json"), results("captions/voc2007_trainval.json")


def pct(x: float) -> float:
    return 100 * x


def gain_and_ci(mean: float, ci: float, sign: float = 1) -> list[float]:
    "A paired difference (study: method minus `bacgcn`) as the text quotes it: value, [low, high] in points."
    m = sign * 100 * mean
    return [m, m - 100 * ci, m + 100 * ci]


def cost_and_ci(d: dict) -> list[float]:
    "A loss quoted as a positive cost: value, [low, high] of minus the paired difference, in points."
    return gain_and_ci(**d, sign=-1)


def paired_values(a: str, b: str) -> list[float]:
    "Mean and 95 % interval (points) of the per-world differences of two study methods' test mAP."
    import numpy as np

    from bacgcn.study import mean_ci

    m, h = mean_ci(np.subtract(*(study("methods", k, "mAP", "values") for k in (a, b))))
    return [100 * m, 100 * (m - h), 100 * (m + h)]


def step(i: int, key: str) -> float:
    return captions("ablation")[i][f"even_ids_tuning_{key}"]


def halves(source, key: str) -> list[float]:
    return [source()[h][key] for h in ("even_ids_tuning", "odd_ids_held_out", "all")]


# (file, pattern: each group a quoted number, the numbers it must equal (in order), decimals of the quote).
# A value given as ("<=", x) is a bound the quote states ("0.2 points or less").
QUOTES = [
    ("README.md", rf"zero-shot mAP {NUM} lies in its target range", lambda: [study("diagnostics", "mAP")], 3),
    ("README.md", rf"the gap between prominent and other objects, {NUM}, lies above its range",
     lambda: [study("diagnostics", "prominence_gap")], 3),
    ("README.md", rf"the `paper` preset reaches {NUM} test\s+mAP, {NUM} points below zero-shot CLIP \(CI \[{NUM}, {NUM}\]\)",
     lambda: [pct(study("methods", "bacgcn_paper", "mAP", "mean")),
              *gain_and_ci(**study("paired_vs_paper", "zeroshot_clip_global", "mAP"))], 1),
    ("README.md", rf"attention masking reading gains {NUM} points \(CI \[{NUM}, {NUM}\]\)",
     lambda: gain_and_ci(**study("paired_vs_paper", "paper_attention", "mAP")), 1),
    ("README.md", rf"beats zero-shot CLIP by\s+{NUM} points \(CI \[{NUM}, {NUM}\]\)",
     lambda: paired_values("bacgcn_tuned", "zeroshot_clip_global"), 1),
    ("README.md", rf"Removing the local branch costs {NUM} points \(CI \[{NUM}, {NUM}\]\)",
     lambda: cost_and_ci(study("paired_vs_paper", "paper_no_local", "mAP")), 1),
    ("README.md", rf"removing\s+the global branch {NUM} \(CI \[{NUM}, {NUM}\]\)",
     lambda: cost_and_ci(study("paired_vs_paper", "paper_no_global", "mAP")), 1),
    ("README.md", rf"the background categories and ReSO move mAP by\s+{NUM} points or less",
     lambda: [("<=", max(abs(pct(study("paired_vs_paper", m, "mAP", "mean")))
                         for m in ("paper_no_graph", "paper_no_backgrounds", "paper_no_reso")))], 1),
    ("README.md", rf"by\s+{NUM} mAP points \(CI \[{NUM}, {NUM}\]\) and {NUM} points of large-object AP \(CI \[{NUM}, "
                  rf"{NUM}\]\)",
     lambda: [*gain_and_ci(**study("vs_control", "bacgcn_tile_head", "mAP")),
              *gain_and_ci(**study("vs_control", "bacgcn_tile_head", "large"))], 1),
    ("05_captions.ipynb", rf"raises micro-F1 from {NUM} \(best plain vote threshold, 3 captions\) to {NUM} and\s+"
     rf"vote-mAP from {NUM} to {NUM}\.",
     lambda: [step(3, "micro_f1"), step(4, "micro_f1"), step(3, "vote_map"), step(4, "vote_map")], 3),
    ("05_captions.ipynb", rf"vote-mAP rises by {NUM} \({NUM} → {NUM} on the training half\)",
     lambda: [step(5, "vote_map") - step(4, "vote_map"), step(4, "vote_map"), step(5, "vote_map")], 2),
    ("05_captions.ipynb", rf"best plain threshold \(m = 3\) gives micro-F1\s+{NUM} against {NUM} for the share rule",
     lambda: [step(3, "micro_f1"), step(4, "micro_f1")], 3),
    ("05_captions.ipynb", r"\| naive, authors' synonyms \| even \(tuning\) / odd \(held out\) / all \| "
     + r" \| ".join([rf"{NUM} / {NUM} / {NUM}"] * 4) + r" \|",
     lambda: [v for k in ("micro_p", "micro_r", "micro_f1", "vote_map") for v in halves(lambda: captions(
         "naive_baseline"), k)], 3),
    ("05_captions.ipynb", r"\| defaults, our synonyms \| even \(tuning\) / odd \(held out\) / all \| "
     + r" \| ".join([rf"{NUM} / {NUM} / {NUM}"] * 4) + r" \|",
     lambda: [v for k in ("micro_p", "micro_r", "micro_f1", "vote_map") for v in halves(lambda: captions("splits"),
                                                                                         k)], 3),
]  # fmt: skip
PAPER = {"93.0", "93.2", "72.2", "48.8"}  # the paper's reported mAP, quoted beside the results


def text_of(name: str) -> str:
    "README.md, or the markdown of a notebook in nbs/."
    if name.endswith(".ipynb"):
        cells = json.loads((REPO / "nbs" / name).read_text(encoding="utf-8"))["cells"]
        return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return (REPO / name).read_text(encoding="utf-8")


def number(s: str) -> float:
    return float(s.replace("−", "-"))


@pytest.mark.parametrize("name,pattern,expected,digits", QUOTES, ids=[f"{q[0]}:{k}" for k, q in enumerate(QUOTES)])
def test_quoted_numbers_equal_the_results(name, pattern, expected, digits):
    found = list(re.finditer(pattern, text_of(name)))
    assert len(found) == 1, f"{name}: the quote /{pattern}/ is found {len(found)} times; update its entry in QUOTES"
    quoted, want = [number(g) for g in found[0].groups()], expected()
    assert len(quoted) == len(want), (quoted, want)
    for q, w in zip(quoted, want):
        if isinstance(w, tuple):
            assert round(w[1], digits) <= q, f"{name}: quotes {q} as a bound, the results give {w[1]:.{digits + 2}f}"
        else:
            assert q == round(w, digits), f"{name}: quotes {q}, the results give {round(w, digits)} ({found[0][0]!r})"


def test_every_number_of_the_readme_results_section_is_a_checked_quote():
    readme = text_of("README.md")
    section = re.search(r"^## Results\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section, "README.md has no '## Results' section"
    spans = [m.span(g) for name, pattern, _, _ in QUOTES if name == "README.md"
             for m in re.finditer(pattern, readme) for g in range(1, len(m.groups()) + 1)]  # fmt: skip
    start = section.start(1)
    unchecked = [m[0] for m in re.finditer(r"(?<![\w.])\d+\.\d+", section[1])
                 if not any(a <= start + m.start() < b for a, b in spans) and m[0] not in PAPER]  # fmt: skip
    assert not unchecked, f"README.md quotes {unchecked} under Results without an entry in QUOTES"


def test_the_tuned_preset_is_the_committed_studys_choice():
    "`PRESETS['tuned']` is what the committed study chose on its design worlds, nothing added or left out."
    from dataclasses import asdict

    from bacgcn.pipeline import ExperimentConfig

    chosen, clip = study("tuned"), {"model_name": "tinyclip"}
    preset = ExperimentConfig(preset="tuned", clip=clip)
    study_choice = ExperimentConfig(preset="paper", clip={**chosen["clip"], **clip}, train=chosen["train"])
    for part in ("clip_config", "train_config"):
        assert asdict(getattr(preset, part)()) == asdict(getattr(study_choice, part)()), part
    assert asdict(preset.clip_config())["masking"] == "attention"  # the study moved something
