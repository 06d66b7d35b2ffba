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


def step(i: int, key: str) -> float:
    return captions("ablation")[i][f"even_ids_tuning_{key}"]


def halves(source, key: str) -> list[float]:
    return [source()[h][key] for h in ("even_ids_tuning", "odd_ids_held_out", "all")]


# (file, pattern: each group a quoted number, the numbers it must equal (in order), decimals of the quote).
# A value given as ("<=", x) is a bound the quote states ("0.2 points or less").
QUOTES = [
    ("README.md", rf"BAC-GCN beats zero-shot CLIP by {NUM} mAP\s+points \(CI \[{NUM}, {NUM}\]\)",
     lambda: gain_and_ci(**study("paired_vs_bacgcn", "zeroshot_clip_global", "mAP"), sign=-1), 1),
    ("README.md", rf"masking, backgrounds and ReSO move mAP by {NUM} points or less",
     lambda: [("<=", max(abs(pct(study("paired_vs_bacgcn", m, "mAP", "mean"))) for m in (
         "ablation_no_local", "ablation_no_graph", "ablation_no_masking", "ablation_no_backgrounds",
         "bacgcn_no_reso")))], 1),
    ("README.md", rf"adds {NUM} points of small-object AP \(CI \[{NUM}, {NUM}\]\)",
     lambda: gain_and_ci(**study("tta", "test_vs_no_reso", "small")), 1),
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
