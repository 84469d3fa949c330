"""A small finished run on a folder whose class and file names are hostile: HTML, spreadsheet
formulas, a name that is not UTF-8."""
import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import icbpl, run_folder

HTML_CLASS = '<img src=x onerror="alert(1)">'
FORMULA_CLASS = "=cmd|calc"
FORMULA_FILE = "=HYPERLINK(evil).png"


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    rng = np.random.default_rng(0)
    for c, name in enumerate((HTML_CLASS, FORMULA_CLASS, "+plus", "@at")):
        for i in range(6):
            file = FORMULA_FILE if (c, i) == (1, 0) else f"-{i}.png" if c == 2 else f"{i}.png"
            (data / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8) // (c + 1)).save(data / name / file)
    proc = icbpl("train", "--dataset", "folder", "--data-root", data, "--backbone", "scratch-mlp",
                 "--n-clusters", 4, "--epochs", 1, "--runs-dir", root / "runs", "--quiet")
    run = run_folder(proc)
    assert json.loads((run / "metrics.json").read_text())["class_names"][0] in (HTML_CLASS, "+plus")
    return root / "runs", run
