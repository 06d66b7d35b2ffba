"""Where the tests find real data: the one setting is the environment variable `BACGCN_REFERENCE_DATA`.

It names a folder laid out as

    captions/voc2007_captions.json        the authors' VOC2007 caption files, from their repository
    captions/voc2007_re_captions.json     https://github.com/yonghyeonjo46/BAC-GCN (folder caption/voc2007)
    labels/voc2007_trainval_cls.txt       label lists, one image per line: "<image id> <class index> ...",
    labels/voc2007_test_cls.txt           classes indexed in the order of the package's vocabularies
    labels/coco2014_train_cls.txt         (bacgcn.data reads VOC and COCO annotations; write a dataset's labels
    labels/coco2014_val_cls.txt           out in this form to use your own copy)
    vocab/<name>_synonyms.json            the synonym lists the built-in vocabularies were written from

Without the variable, the folder `shared/data` beside the repository is used when it exists. A test whose file is
absent skips and says which file and how to provide it; every other test runs without real data."""

import os
from pathlib import Path

import pytest

ENV = "BACGCN_REFERENCE_DATA"
REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ[ENV]).expanduser() if os.environ.get(ENV) else REPO.parent / "shared" / "data"


def real_file(*parts: str) -> Path:
    "The real-data file `ROOT/<parts>`, or a skip that names it and the setting."
    path = ROOT.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"real data file {path} not found: set {ENV} to a folder holding {'/'.join(parts)} "
                    "(see tests/real_data.py for the layout and where the files come from)")
    return path
