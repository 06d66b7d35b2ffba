"""The experiment layer: every notebook in experiments/ run by `bacgcn run` on tiny datasets in the VOC, COCO, NUS-WIDE
and synthetic-benchmark layouts with a tiny random CLIP; the `parameters` tag surviving nbdev-clean; the report's cells;
`check-data` on each kind of missing piece; the run wrapper's refusals before a kernel starts, its FAILED marker, exit
codes and the lines it prints (each once, nothing of the kernel's own log)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from datasets_fixtures import missing_run_files, write_coco, write_label_list, write_nuswide, write_voc
from PIL import Image
from safetensors.torch import save_file

from bacgcn.cli import main
from bacgcn.clip import load_clip, tiny_clip_config
from bacgcn.experiments import (
    ABLATIONS,
    NOT_REPORTED,
    NOT_RUN,
    PROTOCOLS,
    REPORTED,
    check_data,
    cli_check_data,
    cli_run,
    collect_results,
    default_run_name,
    experiment_config,
    experiment_path,
    main_table,
    parse_params,
)
from bacgcn.vocab import load_vocab

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["run", "ablation", "report"]
N = 12  # images per split
TRAIN = {
    "epochs": 2,
    "reso_start_epoch": 2,
    "batch_size": 8,
    "model": {"top_k": 4},
    "reso_config": {"epsilon": 0.5, "min_crop_px": 8},
}
STAGES = ["[1/5] data: ", "[2/5] captions: ", "[3/5] features: ", "[4/5] training: ", "[5/5] evaluation: "]


def cli(*argv) -> tuple[int, str, str]:
    "`bacgcn ARGV...` in this process: (exit status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------------ tiny datasets
def noise_image(path: Path, rng: np.random.Generator, size=(40, 32)) -> None:
    "Overwrite `path` with random colours (the fixture builders write one flat colour)."
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)


def pick_labels(rng, n: int, pool: int = 4) -> list[list[int]]:
    "1-2 classes per image out of the first `pool` classes, each class present at least once."
    out = [sorted(set(rng.choice(pool, size=rng.integers(1, 3), replace=False).tolist())) for _ in range(n)]
    for c in range(pool):
        out[c % n] = sorted(set(out[c % n]) | {c})
    return out


def write_captions(folder: Path, stem: str, labels: dict[str, list[str]], backgrounds: list[str]) -> Path:
    "`<stem>_captions.json` and `<stem>_re_captions.json` in the released format: {'<id>.': [6 strings]}."
    folder.mkdir(parents=True, exist_ok=True)
    caps, recaps = {}, {}
    for k, (iid, names) in enumerate(labels.items()):
        bg = backgrounds[k % len(backgrounds)]
        caps[f"{iid}."] = [
            f"a photo of a {names[0]} on the {bg}",
            f"a {' and a '.join(names)}",
            f"there is a {names[-1]}",
            f"a {names[0]} near the {bg}",
            "a blurry picture",
            f"the {bg} with a {names[0]}",
        ]
        recaps[f"{iid}."] = [", ".join(names), f"a {names[-1]} and {bg}", "an image", f"a {names[0]}", bg, "a scene"]
    (folder / f"{stem}_captions.json").write_text(json.dumps(caps))
    (folder / f"{stem}_re_captions.json").write_text(json.dumps(recaps))
    return folder


def make_voc(root: Path, rng) -> tuple[Path, Path]:
    v = load_vocab("voc2007")
    ids = [f"{i:06d}" for i in range(1, 2 * N + 1)]
    lab = dict(zip(ids, pick_labels(rng, 2 * N)))
    ann = {i: [(v.classes[c], 0) for c in cs] for i, cs in lab.items()}
    ann[ids[-1]].append(("bird", 1))  # a difficult object: ignored in the AP
    voc = write_voc(root, ann, {"trainval": ids[:N], "test": ids[N:]})
    for i in ids:
        noise_image(voc / "JPEGImages" / f"{i}.jpg", rng)
    labels = {i: [v.classes[c] for c in lab[i]] for i in ids[:N]}
    return root, write_captions(root / "caption", "voc2007", labels, ["grass", "sky", "road"])


def make_coco(root: Path, rng) -> tuple[Path, Path]:
    "COCO with an image without annotations in train2014 that has captions (the reader drops it, the run too)."
    v = load_vocab("coco2014")
    cats = list(enumerate(v.classes, 1))
    names = {}
    for split, off in [("train2014", 0), ("val2014", 1000)]:
        images = [(off + i, f"COCO_{split}_{off + i:012d}.jpg") for i in range(N + 1)]
        lab = pick_labels(rng, N)
        write_coco(root, split, images, cats, [(iid, c + 1, 0) for (iid, _), cs in zip(images, lab) for c in cs])
        for _, f in images:
            noise_image(root / split / f, rng)
        if split == "train2014":
            names = {Path(f).stem: [v.classes[c] for c in cs] for (_, f), cs in zip(images, lab)}
            names[Path(images[-1][1]).stem] = ["dog"]  # captions of the unannotated image
    return root, write_captions(root / "caption", "coco2014", names, ["grass", "road"])


def make_nuswide(root: Path, rng) -> tuple[Path, Path]:
    "NUS-WIDE with one unlabelled test image (left out by the default protocol); two images with 5 and 7 captions."
    v = load_vocab("nuswide")
    names = {}
    for split in ["Train", "Test"]:
        rel = [f"{v.classes[k % 4]}/{split}_{k:04d}.jpg" for k in range(N + (split == "Test"))]
        lab = pick_labels(rng, N) + ([[]] if split == "Test" else [])
        y = np.zeros((len(rel), v.n_classes), np.int8)
        for r, cs in enumerate(lab):
            y[r, cs] = 1
        write_nuswide(root, split, v.classes, rel, y)
        for p in rel:
            noise_image(root / "Flickr" / p, rng)
        if split == "Train":
            names = {str(Path(p).with_suffix("")): [v.classes[c] for c in cs] for p, cs in zip(rel, lab)}
    caps = write_captions(root / "caption", "nuswide", names, ["sky", "water"])
    f = caps / "nuswide_captions.json"
    d = json.loads(f.read_text())
    first, second = list(d)[:2]
    d[first], d[second] = d[first][:5], d[second] + ["one caption too many"]
    f.write_text(json.dumps(d))
    return root, caps


def make_synthetic(root: Path, rng) -> tuple[Path, Path]:
    "The synthetic benchmark's layout: images/<id>.png, <split>_cls.txt, synth.json, train_(re_)captions.json."
    from bacgcn.synth import synth_vocab

    v = synth_vocab()
    root.mkdir(parents=True, exist_ok=True)
    v.save(root / "synth.json")
    names = {}
    for split in ["train", "test"]:
        ids = [f"{split}_{i:05d}" for i in range(N)]
        lab = pick_labels(rng, N)
        write_label_list(root / f"{split}_cls.txt", dict(zip(ids, lab)))
        for i in ids:
            noise_image(root / "images" / f"{i}.png", rng)
        if split == "train":
            names = {i: [v.classes[c] for c in cs] for i, cs in zip(ids, lab)}
    return root, write_captions(root, "train", names, ["sky", "grass"])


MAKERS = {"voc2007": make_voc, "coco2014": make_coco, "nuswide": make_nuswide, "synthetic": make_synthetic}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "The data of every layout, a tiny random CLIP in a file, and the `-p` parameters of a run on each."
    tmp = tmp_path_factory.mktemp("experiments")
    rng = np.random.default_rng(0)
    (tmp / "clip.json").write_text(json.dumps(tiny_clip_config()))
    torch.manual_seed(0)
    save_file(
        load_clip(model_config=str(tmp / "clip.json"), device="cpu").model.state_dict(), str(tmp / "clip.safetensors")
    )
    data = {p: make(tmp / p, rng) for p, make in MAKERS.items()}
    config = {
        "clip": {"model_config": str(tmp / "clip.json"), "pretrained": str(tmp / "clip.safetensors")},
        "train": TRAIN,
        "features": {"num_workers": 0, "batch_size": 16},
    }

    def params(protocol, **extra):
        root, caps = data[protocol]
        p = dict(
            protocol=protocol,
            data_root=root,
            captions=caps,
            config=json.dumps(config),
            device="cpu",
            cache_dir=tmp / "cache",
            results_root=tmp / "results",
            n_figure_images=2,
        )
        p.update(extra)
        return [x for k, v in p.items() if v is not None for x in ("-p", k, str(v))]

    return tmp, data, params


@pytest.fixture(scope="module")
def runs(tiny):
    "`bacgcn run run` on every layout, then the ablation (two variants) and the report: {name: (rc, stdout, stderr)}."
    tmp, _, params = tiny
    done = {p: cli("run", "run", *params(p)) for p in MAKERS}
    done["ablation"] = cli("run", "ablation", *params("voc2007", variants='["full", "no_reso"]', n_figure_images=None))
    done["report"] = cli("run", "report", "-p", "results_root", tmp / "results")
    return tmp / "results", done


def run_folder(stdout: str) -> Path:
    return Path(re.search(r" -> (.+)", stdout).group(1).strip())


# ---------------------------------------------------------------------------------------------- notebooks
@pytest.mark.parametrize("protocol", list(MAKERS))
def test_run_writes_its_folder_and_prints_each_stage_once(tiny, runs, protocol):
    rc, stdout, err = runs[1][protocol]
    assert rc == 0, err[-3000:]
    out = run_folder(stdout)
    assert out.parent == runs[0] / protocol and not (out / "FAILED").exists()
    assert not missing_run_files(out), protocol
    m = json.loads((out / "metrics.json").read_text())
    n_test = {"nuswide": N}.get(protocol, N)  # NUS-WIDE: the unlabelled 13th test image is not scored
    assert (m["protocol"], m["protocol_exact"], m["experiment"], m["n_train"], m["n_test"]) == (
        protocol,
        True,
        "run",
        N,
        n_test,
    )
    methods = {"bacgcn", "zeroshot_clip_global", "zeroshot_clip_local", "zeroshot_masked_global", "zeroshot_cdul"}
    assert set(m["methods"]) == methods
    vocab = str(tiny[1]["synthetic"][0] / "synth.json") if protocol == "synthetic" else protocol
    bac = m["methods"]["bacgcn"]
    assert list(bac["ap_per_class"]) == load_vocab(vocab).classes and 0 <= bac["mAP"] <= 1
    assert ("mAP_conventions" in bac) == (protocol == "voc2007")
    assert [(h["epoch"], h["reso"]) for h in m["history"]["bacgcn"]] == [(1, False), (2, True)]
    cfg = json.loads((out / "experiment.json").read_text())
    assert (
        cfg["train"]["epochs"] == 2 and cfg["out_dir"] == str(out) and cfg["clip"]["model_config"].endswith("clip.json")
    )
    for line in STAGES + ["epoch 1/2: loss", "epoch 2/2: loss", "ReSO at epoch 2: "]:
        assert sum(l.startswith(f"  | {line}") for l in err.splitlines()) == 1 + line.startswith("["), (line, err)
    assert "Executing Cell" not in err and "IPKernelApp" not in err and "TCP" not in err


def test_the_protocols_options_reach_the_reader(runs):
    from bacgcn.config import as_config
    from bacgcn.pipeline import ExperimentConfig

    out = run_folder(runs[1]["voc2007"][1])
    spec = as_config(ExperimentConfig, json.loads((out / "experiment.json").read_text())).data_spec()
    assert (spec.protocol, spec.train_split, spec.test_split, spec.options) == (
        "voc2007",
        "trainval",
        "test",
        {"difficult": "ignore"},
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol_exact"] is True and m["deviations"] == {}
    assert m["pseudo_label_quality"]["n_images"] == N  # the training split's labels score the pseudo labels
    nus = json.loads((run_folder(runs[1]["nuswide"][1]) / "metrics.json").read_text())
    assert nus["n_test"] == N and nus["partial"] is None


def test_wrong_caption_counts_are_warned_about_with_their_ids(tiny, runs):
    _, _, err = runs[1]["nuswide"]
    caps = tiny[1]["nuswide"][1] / "nuswide_captions.json"
    first, second = list(json.loads(caps.read_text()))[:2]
    line = next(l for l in err.splitlines() if "number of captions other than" in l)
    assert "2 of 12 images" in line and first.rstrip(".") in line and second.rstrip(".") in line, line


def test_ablation_grid(runs):
    results, done = runs
    assert done["ablation"][0] == 0, done["ablation"][2][-3000:]
    out = results / "voc2007" / "ablation"
    t = pd.read_csv(out / "ablation.csv", index_col=["preset", "variant"])
    assert list(t.index) == [(p, v) for p in ("paper", "tuned") for v in ("full", "no_reso")]
    assert (t.xs("full", level="variant")["Δ vs full"] == 0).all()
    for p, v in t.index:
        m = json.loads((out / p / v / "metrics.json").read_text())
        assert (m["experiment"], m["variant"], m["preset"]) == ("ablation", v, p)
        np.testing.assert_allclose(t.loc[(p, v), "mAP"], round(100 * m["methods"]["bacgcn"]["mAP"], 2))
        assert [r["reso"] for r in m["history"]["bacgcn"]] == [False, v == "full"]
    assert (out / "ablation.ipynb").is_file() and (out / "figures" / "ablation.png").is_file()
    assert done["ablation"][2].count("[3/5] features: ") == 2  # the features prepared once for the whole grid


def test_report_collates_the_runs(runs):
    results, done = runs
    assert done["report"][0] == 0, done["report"][2][-3000:]
    readme = (results / "README.md").read_text()
    table = main_table(collect_results(results))
    ours = table.loc["BAC-GCN (this implementation)"]
    for col, proto in [
        ("VOC2007", "voc2007"),
        ("COCO2014", "coco2014"),
        ("NUS-WIDE", "nuswide"),
        ("synthetic", "synthetic"),
    ]:
        m = json.loads((run_folder(done[proto][1]) / "metrics.json").read_text())
        assert ours[col] == f"{100 * m['methods']['bacgcn']['mAP']:.1f}", col  # the run, not the ablation variants
    assert ours["VOC2012"] == NOT_RUN
    assert "| BAC-GCN (this implementation) | " + " | ".join(ours.tolist()) + " |" in readme
    assert "| BAC-GCN (reported) | 93.0 | 93.2 | 72.2 | 48.8 | – |" in readme
    assert (results / "figures" / "main_table.png").is_file() and (results / "figures" / "map_per_epoch.png").is_file()
    # every run: integer image counts, the VOC conventions as their own columns, the partial flag
    head = next(l for l in readme.splitlines() if l.startswith("| path |"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert {"mAP_positive", "mAP_negative", "partial", "n_train", "n_test"} <= set(cols)
    voc = json.loads((run_folder(done["voc2007"][1]) / "metrics.json").read_text())["methods"]["bacgcn"]
    for line in readme.splitlines():
        if line.startswith(("| voc2007/", "| nuswide/")):
            cells = dict(zip(cols, (c.strip() for c in line.strip("|").split("|"))))
            assert re.fullmatch(r"\d+", cells["n_train"]) and re.fullmatch(r"\d+", cells["n_test"]), line
            if line.startswith("| nuswide/"):
                assert cells["n_test"] == str(N) and cells["partial"] == "False"
            elif "ablation" not in line:
                assert cells["mAP_positive"] == f"{round(100 * voc['mAP_conventions']['positive'], 2)}"


def test_report_on_empty_results_says_not_run_everywhere(tmp_path):
    t = main_table(collect_results(tmp_path / "none"))
    measured = [i for i in t.index if "(reported)" not in i]
    assert (t.loc[measured] == NOT_RUN).all().all()
    for method, r in REPORTED.items():
        expected = [f"{r['mAP'][c]:.1f}" if c in r["mAP"] else NOT_REPORTED for c in t.columns]
        assert t.loc[f"{method} (reported)"].tolist() == expected


def test_failed_partial_and_ablation_runs_do_not_fill_the_table(tmp_path):
    def put(rel, mAP, **kw):
        f = tmp_path / rel / "metrics.json"
        f.parent.mkdir(parents=True)
        f.write_text(json.dumps({"methods": {"bacgcn": {"mAP": mAP}}, "protocol_exact": True, "preset": "paper", **kw}))

    put("coco2014/a", 0.5)
    (tmp_path / "coco2014" / "a" / "FAILED").write_text("x\nRuntimeError: died\n")
    put("nuswide/ablation/full", 0.4, experiment="ablation", variant="full")
    put("voc2007/b", 0.6, partial={"n_missing": 3, "missing": ["a", "b", "c"]})
    put("voc2012/c", 0.7, protocol="voc2012")
    res = collect_results(tmp_path)
    t = main_table(res)
    assert t.loc["BAC-GCN (this implementation)"].tolist() == [NOT_RUN, "70.0", NOT_RUN, NOT_RUN, NOT_RUN]
    assert res.set_index("path").loc["voc2007/b", "partial"] == True


# ---------------------------------------------------------------------------------------------- the run wrapper
def test_a_rerun_prints_each_line_once_and_nothing_of_the_kernel(tiny, runs):
    """`bacgcn run` again on a finished run, in a process whose root logger prints (as when a library configures
    logging): each stage line once; with --quiet, not a line on stderr."""
    _, _, params = tiny
    code = "import logging, sys; logging.basicConfig(level=logging.INFO); from bacgcn.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "run", "run", *map(str, params("voc2007"))]
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    for line in STAGES + ["done: ", "ReSO at epoch 2: "]:
        assert sum(line in l for l in r.stderr.splitlines()) == 1 + line.startswith("["), (line, r.stderr)
    assert "IPKernelApp" not in r.stderr and "TCP" not in r.stderr
    q = subprocess.run([*argv, "--quiet"], capture_output=True, text=True, check=False)
    assert q.returncode == 0 and q.stderr == "", q.stderr
    m = json.loads((run_folder(r.stdout) / "metrics.json").read_text())
    assert len(m["reruns"]) == 2  # the first run's times kept, each rerun's beside them


def test_a_folder_of_another_run_is_refused_before_the_kernel_and_the_advice_works(tiny, runs):
    _, _, params = tiny
    first = run_folder(runs[1]["synthetic"][1])
    out = first.parent / "copy"
    shutil.copytree(first, out)
    before = {f: f.stat().st_mtime_ns for f in out.rglob("*")}
    rc, _, err = cli("run", "run", *params("synthetic"), "-p", "config.train.lr", "0.5", "--out", out)
    assert rc == 2 and "holds another run" in err and "train.lr: 0.001 there, 0.5 here" in err, err
    assert "-p overwrite true" in err and {f: f.stat().st_mtime_ns for f in out.rglob("*")} == before
    rc, _, err = cli(
        "run", "run", *params("synthetic"), "-p", "config.train.lr", "0.5", "--out", out, "-p", "overwrite", "true"
    )
    assert rc == 0, err[-3000:]
    assert json.loads((out / "run.json").read_text())["identity"]["train"]["lr"] == 0.5
    before = {f: f.stat().st_mtime_ns for f in out.rglob("*")}
    rc, _, err = cli(
        "run", "run", *params("synthetic"), "-p", "config.train.lr", "0.5", "--out", out, "-p", "resume", "false"
    )
    assert rc == 2 and "-p resume true" in err and {f: f.stat().st_mtime_ns for f in out.rglob("*")} == before, err
    (out / "run.json").unlink()
    rc, _, err = cli("run", "run", *params("synthetic"), "--out", out)  # results without run.json: an unknown run
    assert rc == 2 and "results of an unknown run" in err, err


def test_bad_settings_are_refused_before_the_kernel_starts(tiny, tmp_path):
    _, _, params = tiny
    res = tmp_path / "results"
    for extra, what in [
        (["-p", "config.clip.geometry", "pad"], "geometry='pad'"),
        (["-p", "epochs", "3"], "has no parameter epochs"),
        (["-p", "config.train.no_such_field", "1"], "no_such_field"),
        (["-p", "preset", "best"], "preset='best'"),
    ]:
        rc, _, err = cli("run", "run", *params("voc2007"), "-p", "results_root", res, *extra)
        assert rc == 2 and what in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert not res.exists(), extra  # no folder, no FAILED marker


def toy_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1\nout_dir = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from pathlib import Path\nassert not isinstance(x, int) or x > 0, 'x must be "
            "positive'\nPath(out_dir, 'x.txt').write_text(repr(x))\nprint('wrote x')"
        ),
    ]
    nbformat.write(nb, path)
    return path


def test_run_marks_failure_and_clears_it(tmp_path, capsys):
    nb = toy_notebook(tmp_path / "toy.ipynb")
    out = tmp_path / "out"
    assert cli_run(str(nb), {"x": -2}, str(out)) == 1
    assert "AssertionError: x must be positive" in (out / "FAILED").read_text()
    assert (out / "toy.ipynb").is_file(), "the executed notebook is kept beside the outputs, failed or not"
    assert "failed" in capsys.readouterr().err
    assert collect_results(tmp_path)["status"].tolist() == ["failed"]
    assert cli_run(str(nb), {"x": {"a": 1}}, str(out)) == 0 and not (out / "FAILED").exists()
    assert (out / "x.txt").read_text() == "{'a': 1}"
    assert capsys.readouterr().err.splitlines() == ["  | wrote x"]
    with pytest.raises(FileNotFoundError, match="not found"):
        cli_run("no_such_experiment", {}, str(out))
    with pytest.raises(ValueError, match="has no parameter y"):
        cli_run(str(nb), {"y": 1}, str(out))


def test_parse_params():
    assert parse_params(
        [
            ("protocol", "coco2014"),
            ("config.train.epochs", "3"),
            ("config.train.lr", "5e-4"),
            ("config.train.model.top_k", "4"),
            ("allow_missing", "true"),
            ("clip_pretrained", "/w/B.pt"),
            ("variants", "[full, no_reso]"),
            "config.clip.masking=attention",
        ]
    ) == {
        "protocol": "coco2014",
        "allow_missing": True,
        "clip_pretrained": "/w/B.pt",
        "variants": ["full", "no_reso"],
        "config": {"train": {"epochs": 3, "lr": 5e-4, "model": {"top_k": 4}}, "clip": {"masking": "attention"}},
    }
    with pytest.raises(ValueError, match="not a mapping"):
        parse_params([("train", "3"), ("train.epochs", "1")])
    with pytest.raises(ValueError, match="parameter name"):
        parse_params([("bad name", "1")])


def test_experiment_config_and_the_run_name(tmp_path):
    cfg = experiment_config("coco2014", tmp_path, config={"train": {"seed": 3, "epochs": 12}})
    assert cfg.out_dir == str(Path("results/coco2014/ViT-B-16-openai-native-squash-pixelblack-paper-reso11-e12-s3"))
    cfg = experiment_config(
        "nuswide",
        preset="tuned",
        clip_model="tinyclip",
        results_root=str(tmp_path),
        config={"train": {"reso": False, "graph": {"edges": "all"}}},
    )
    assert Path(cfg.out_dir) == tmp_path / "nuswide" / "tinyclip-shipped-native-squash-attention1-tuned-noreso-e16-s0"
    assert cfg.clip_config().masking == "attention" and cfg.train_config().model.global_views == "plain"  # the preset
    assert cfg.train_config().graph.edges == "all"  # an explicit setting over the preset
    w = tmp_path / "w.bin"
    w.write_bytes(b"weights")
    cfg = experiment_config("voc2007", clip_pretrained=str(w), config={"clip": {"model_config": tiny_clip_config()}})
    assert default_run_name(cfg).startswith("custom-file-")  # a weights file is named by its hash
    assert experiment_config("voc2007", tta={"grid": 2}).tta == {"grid": 2}  # -s tta.grid=2 is a setting, not a flag
    for bad, what in [
        ({"train": {"epochs": 0}}, "epochs"),
        ({"clip": {"masking": "none"}}, "masking"),
        ({"data": {"trainsplit": "x"}}, "unknown data fields"),
        ({"features": {"dtype": "int4"}}, "dtype"),
        ({"caption_config": {"votes": 2}}, "votes"),
        ({"tta": {"grid": 0}}, "grid"),
        ({"recaption": ""}, "recaption"),
    ]:
        with pytest.raises(ValueError, match=what):  # before anything runs
            experiment_config("voc2007", config=bad)


# ---------------------------------------------------------------------------------------------- check-data
def whats(problems) -> list[tuple[str, str]]:
    return [(p.path.name, p.what) for p in problems]


@pytest.fixture
def voc(tmp_path):
    ann = {"000001": [("dog", 0)], "000002": [("cat", 0)], "000003": [("car", 0)], "000004": [("bus", 0)]}
    root = tmp_path / "data"
    write_voc(root, ann, {"trainval": ["000001", "000002"], "test": ["000003", "000004"]})
    caps = tmp_path / "caption"
    caps.mkdir()
    six = lambda s: [s] * 6
    (caps / "voc2007_captions.json").write_text(json.dumps({"000001.": six("a dog"), "000002.": six("a cat")}))
    return root, caps


def test_check_data_complete(voc, capsys):
    root, caps = voc
    problems, notes, found = check_data("voc2007", root, captions=caps)
    assert (problems, notes, sorted(found)) == ([], [], ["test", "trainval"])
    assert cli_check_data("voc2007", str(root), str(caps)) == 0
    out = capsys.readouterr().out
    assert "split trainval: 2 images (the protocol expects 5,011)" in out and "no problems" in out


def test_check_data_voc_missing_pieces(voc):
    root, _ = voc
    v = root / "VOCdevkit" / "VOC2007"
    (v / "JPEGImages" / "000004.jpg").unlink()
    (v / "Annotations" / "000003.xml").unlink()
    assert whats(check_data("voc2007", root)[0]) == [("000003.xml", "1 of 2 annotation files missing (000003.xml)")]
    (v / "Annotations" / "000003.xml").write_text((v / "Annotations" / "000004.xml").read_text())
    assert whats(check_data("voc2007", root)[0]) == [("000004.jpg", "1 of 2 image files missing (000004.jpg)")]
    (v / "JPEGImages" / "000002.jpg").unlink()  # a training image: left out of the run, a note
    problems, notes, _ = check_data("voc2007", root, split="trainval")
    assert problems == [] and whats(notes) == [("000002.jpg", "1 of 2 image files missing (000002.jpg)")]
    (v / "ImageSets" / "Main" / "test.txt").unlink()
    assert ("test.txt", "split file 'test' missing") in whats(check_data("voc2007", root, split="test")[0])
    seg = [(p.path.relative_to(root).as_posix(), p.what) for p in check_data("voc2012", v, split="train")[0]]
    assert seg == [
        ("VOCdevkit/VOC2007/ImageSets/Segmentation", "folder missing"),
        ("VOCdevkit/VOC2007/ImageSets/Segmentation/train.txt", "split file 'train' missing"),
    ]


def test_check_data_captions(voc, capsys):
    "Ids without captions and captions of other images are notes; counts other than six are listed, exit 1."
    root, caps = voc
    f = caps / "voc2007_captions.json"
    f.write_text(json.dumps({"000001.": ["a dog"] * 6, "000099.": ["a cow"] * 6}))
    problems, notes, _ = check_data("voc2007", root, captions=caps)
    assert problems == [] and whats(notes) == [
        (f.name, "1 of 2 training images have no captions (000002)"),
        (f.name, "1 caption ids are not images of the training split (000099)"),
    ]
    assert cli_check_data("voc2007", str(root), str(caps)) == 0
    f.write_text(json.dumps({"000001.": ["a dog"], "000002.": ["a cat"] * 13}))
    problems, _, _ = check_data("voc2007", root, captions=caps)
    assert whats(problems) == [(f.name, "2 images have other than 6 captions (000001: 1, 000002: 13)")]
    assert cli_check_data("voc2007", str(root), str(caps)) == 1
    assert "000001" in capsys.readouterr().out
    for text, what in [
        ("{not json", "invalid JSON"),
        ("[]", "expected a JSON object"),
        (json.dumps({"000001.": "a dog"}), "must be a list of strings"),
    ]:
        f.write_text(text)
        assert what in check_data("voc2007", root, captions=caps)[0][0].what
    f.unlink()
    assert "does not exist" in check_data("voc2007", root, captions=caps)[0][0].what


def test_the_captions_command_warns_about_caption_counts(tmp_path):
    "`bacgcn captions` scores and writes the pseudo labels of files with 1 and 13 captions, saying which and how many."
    caps = tmp_path / "c.json"
    caps.write_text(json.dumps({"000001.": ["a dog"], "000002.": ["a cat"] * 13, "000003.": ["a car"] * 6}))
    (tmp_path / "gt.txt").write_text("000001 11\n000002 7\n000003 6\n")
    for extra in (["--labels", tmp_path / "gt.txt", "--json"], ["--out", tmp_path / "out"]):
        with pytest.warns(
            UserWarning, match=r"2 of 3 images .*other than the format's 6: '000001' \(1\), '000002' \(13\)"
        ):
            rc, _, err = cli("captions", "--captions", caps, "--vocab", "voc2007", *extra)
        assert rc == 0, err
    assert (tmp_path / "out").is_dir()


def test_check_data_coco_captions_of_an_unannotated_image_are_a_note(tmp_path, capsys):
    "`bacgcn run` accepts captions of images the reader drops, so check-data does too (exit 0, with a note)."
    cats = list(enumerate(load_vocab("coco2014").classes, 1))
    for split in ("train2014", "val2014"):
        write_coco(tmp_path, split, [(1, f"COCO_{split}_1.jpg"), (2, f"COCO_{split}_2.jpg")], cats, [(1, 1, 0)])
    caps = tmp_path / "caption"
    caps.mkdir()
    (caps / "coco2014_captions.json").write_text(json.dumps({f"COCO_train2014_{i}.": ["a person"] * 6 for i in (1, 2)}))
    problems, notes, found = check_data("coco2014", tmp_path, captions=caps)
    assert problems == [] and len(found["train2014"]) == 1
    assert whats(notes) == [
        ("coco2014_captions.json", "1 caption ids are not images of the training split (COCO_train2014_2)")
    ]
    assert cli_check_data("coco2014", str(tmp_path), str(caps)) == 0
    out = capsys.readouterr().out
    assert "split train2014: 1 images" in out and "1 note" in out and "COCO_train2014_2" in out


def test_check_data_coco_and_nuswide_missing_pieces(tmp_path):
    cats = list(enumerate(load_vocab("coco2014").classes, 1))
    write_coco(tmp_path / "coco", "train2014", [(1, "a.jpg"), (2, "b.jpg")], cats, [(1, 1, 0), (2, 3, 0)])
    (tmp_path / "coco" / "train2014" / "b.jpg").unlink()
    problems, notes, _ = check_data("coco2014", tmp_path / "coco")
    assert whats(problems) == [("val2014", "folder missing"), ("instances_val2014.json", "annotation file missing")]
    assert whats(notes) == [("b.jpg", "1 of 2 image files missing (b.jpg)")]
    concepts = load_vocab("nuswide").classes
    y = np.zeros((2, len(concepts)), np.int8)
    y[0, 0] = y[1, 5] = 1
    nus = tmp_path / "nus"
    write_nuswide(nus, "Train", concepts, ["a/1.jpg", "b/2.jpg"], y)
    (nus / "Groundtruth" / "TrainTestLabels" / f"Labels_{concepts[3]}_Train.txt").unlink()
    assert whats(check_data("nuswide", nus, split="Train")[0]) == [
        (f"Labels_{concepts[3]}_Train.txt", f"1 of 81 label files missing (Labels_{concepts[3]}_Train.txt)")
    ]
    test = whats(check_data("nuswide", nus, split="Test")[0])
    assert test[0] == ("TestImagelist.txt", "file missing") and test[1][1].startswith("81 of 81 label files missing")


def test_check_data_synthetic_layout(tmp_path):
    (tmp_path / "images").mkdir()
    write_label_list(tmp_path / "train_cls.txt", {"train_00000": [0]})
    assert "synth.json" in " ".join(str(p) for p in check_data("synthetic", tmp_path)[0])
    from bacgcn.synth import synth_vocab

    synth_vocab().save(tmp_path / "synth.json")
    problems, notes, _ = check_data("synthetic", tmp_path)
    assert whats(problems) == [("test_cls.txt", "missing")]
    assert whats(notes) == [("train_00000.png", "1 of 1 image files missing (train_00000.png)")]


# ---------------------------------------------------------------------------------------------- the notebooks
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_parameters_tag_survives_nbdev_clean(tmp_path, name):
    src = experiment_path(name)
    assert src.parent == REPO / "experiments"
    copy = tmp_path / f"{name}.ipynb"
    shutil.copy(src, copy)
    subprocess.run(["nbdev-clean", "--fname", str(copy)], cwd=REPO, check=True, capture_output=True)
    nb = nbformat.read(copy, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert copy.read_text() == src.read_text(), f"experiments/{name}.ipynb is not clean: run nbdev-clean on it"
    lines = [l for l in tagged[0].source.splitlines() if l.strip() and not l.startswith("#")]
    assert lines and all(re.match(r"\w+: [\w\[\]]+ = .+  # .+", l) for l in lines), lines  # typed and commented


def test_notebooks_import_only_from_bacgcn_and_plotting():
    allowed = {
        "json",
        "time",
        "typing",
        "datetime",
        "pathlib",
        "matplotlib",
        "numpy",
        "pandas",
        "seaborn",
        "torch",
        "bacgcn",
    }
    for name in EXPERIMENTS:
        for c in nbformat.read(experiment_path(name), as_version=4).cells:
            for line in c.source.splitlines():
                if line.startswith(("import ", "from ")):
                    assert line.split()[1].split(".")[0] in allowed, f"{name}: {line}"


def test_the_notebooks_say_which_anchor_counts_difficult_objects_how():
    "VOC2007 tables use three conventions: the metrics and protocols notebooks name each anchor's."
    for name in ("04_metrics", "15_protocols"):
        cells = nbformat.read(REPO / "nbs" / f"{name}.ipynb", as_version=4).cells
        text = " ".join(c.source for c in cells if c.cell_type == "markdown").replace("\n", " ")
        for anchor, convention in [("TagCLIP", "positive"), ("PIAA", "negative")]:
            assert re.search(rf"{anchor}[^.]{{0,80}}{convention}|{convention}[^.]{{0,80}}{anchor}", text), (
                name,
                anchor,
            )


def test_the_grid_and_the_tables():
    assert {p.table for p in PROTOCOLS.values()} >= {"VOC2007", "VOC2012", "COCO2014", "NUS-WIDE", "synthetic"}
    assert set(ABLATIONS) >= {"full", "no_reso", "no_backgrounds", "no_masking", "no_graph", "no_local", "no_global"}
    guide = (REPO / "experiments" / "README.md").read_text()
    for name in ["voc2007", "voc2012", "voc2012-main", "coco2014", "nuswide", "synthetic"]:
        assert f"-p protocol {name} " in guide, name
