#!/usr/bin/env bash
# Reproduces results/captions/voc2007_trainval.json: quality of the caption pseudo labels on the authors'
# VOC2007 trainval captions, read in place from the reference data folder: $BACGCN_REFERENCE_DATA, by default
# shared/data beside the repository (layout: tests/real_data.py); the files are never copied into the repository.
# Run from anywhere: bash results/captions/make.sh   (about a minute on one CPU core)
set -euo pipefail
cd "$(dirname "$0")/../.."
REF="${BACGCN_REFERENCE_DATA:-../shared/data}"
OUT=results/captions/voc2007_trainval.json
CMD="bacgcn captions --captions $REF/captions/voc2007_captions.json --recaptions $REF/captions/voc2007_re_captions.json --vocab voc2007 --labels $REF/labels/voc2007_trainval_cls.txt --json"
$CMD > "$OUT.tmp"
python - "$OUT" "$CMD" <<'PY'
import json, os, sys
from pathlib import Path
from bacgcn.captions import CaptionConfig, align, pseudo_labels, read_captions, score_pseudo_labels, vocab_with_synonyms
from bacgcn.data import read_label_list
from bacgcn.vocab import load_vocab
out, cmd = Path(sys.argv[1]), sys.argv[2]
res = json.loads(Path(f"{out}.tmp").read_text())
S = Path(os.environ.get("BACGCN_REFERENCE_DATA") or "../shared/data")
voc = load_vocab("voc2007")
caps = read_captions(S / "captions/voc2007_captions.json", S / "captions/voc2007_re_captions.json")
gt = read_label_list(S / "labels/voc2007_trainval_cls.txt", voc.classes)
keys = ["micro_p", "micro_r", "micro_f1", "macro_p", "macro_r", "macro_f1", "vote_map", "n_images"]
def halves(pl):
    out = {}
    for name, keep in (("even_ids_tuning", 0), ("odd_ids_held_out", 1), ("all", None)):
        ids = [i for i in pl.image_ids if keep is None or int(i) % 2 == keep]
        r = score_pseudo_labels(align(pl, ids)[0], gt)
        out[name] = {k: r[k] for k in keys}
    return out
ours = halves(pseudo_labels(caps, voc, CaptionConfig()))
assert abs(ours["all"]["micro_f1"] - res["micro_f1"]) < 1e-12
naive_vocab = vocab_with_synonyms(voc, S / "vocab/voc2007_synonyms.json")
naive = halves(pseudo_labels(caps, naive_vocab, CaptionConfig.naive()))
plain = dict(share_of="all", min_share=0.0, salience_weight=0.0)
steps = [("authors' synonyms, naive", naive_vocab, CaptionConfig.naive()),
         ("our synonyms, naive", voc, CaptionConfig.naive()),
         ("  + hard = named by >= 3 captions", voc, CaptionConfig(**{**vars(CaptionConfig.naive()), "min_votes": 3})),
         ("  + echo / interior removal, stop phrases, context rules", voc, CaptionConfig(min_votes=3, **plain)),
         ("  + share of informative captions >= 0.3 (min_votes 1)", voc, CaptionConfig(salience_weight=0.0)),
         ("  + salience tie-break 0.1 (= defaults)", voc, CaptionConfig())]
ablation = []
for name, v, cfg in steps:
    h = halves(pseudo_labels(caps, v, cfg))
    ablation.append({"step": name, **{f"{half}_{k}": h[half][k] for half in ("even_ids_tuning", "odd_ids_held_out")
                                      for k in ("micro_f1", "vote_map")}})
res = {"what": "caption pseudo labels (bacgcn.captions, default CaptionConfig, bacgcn/vocabs/voc2007.json synonyms) "
               "scored against VOC2007 trainval ground truth; classes only",
       "command": cmd, "produced_by": "results/captions/make.sh",
       "data": {"folder": "the reference data folder ($BACGCN_REFERENCE_DATA; layout: tests/real_data.py)",
                "captions": "captions/voc2007_captions.json and voc2007_re_captions.json (BLIP-2, released with the "
                            "BAC-GCN paper)",
                "labels": "labels/voc2007_trainval_cls.txt (TagCLIP image set)",
                "naive_synonyms": "vocab/voc2007_synonyms.json (the authors' synonym lists)"},
       **res,
       "splits": ours,
       "naive_baseline": {"config": "CaptionConfig.naive() with the authors' synonym lists (exact matching with singular "
                                    "forms; hard label = named by >= 1 of the 12 captions; soft = share of all captions)",
                          **naive},
       "ablation": ablation}
out.write_text(json.dumps(res, indent=1) + "\n")
Path(f"{out}.tmp").unlink()
print(f"wrote {out}")
PY
