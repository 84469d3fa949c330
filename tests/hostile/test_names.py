"""User-named things (class and file names) are shown as text: never as HTML in the app, never as a
formula in a spreadsheet opening the exported CSV."""
import csv
import json

from streamlit.testing.v1 import AppTest

from icbpl_app.analysis import confusion
from icbpl_app.figures import confusion_figure, latent_figure
from icbpl_core.store.export import export_table
from icbpl_core.store.runs import open_run
from tests.helpers import APP, icbpl

from .conftest import FORMULA_CLASS, FORMULA_FILE, HTML_CLASS


def test_gallery_captions_escape_class_names(hostile_run, monkeypatch):
    runs_dir, run = hostile_run
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(runs_dir))
    names = json.loads((run / "metrics.json").read_text())["class_names"]
    rows = list(csv.DictReader((run / "assignments.csv").open()))
    query = next(int(r["index"]) for r in rows if names[int(r["label"])] == HTML_CLASS)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["run_id"] = run.name
    at.session_state["nb_query"] = query                    # its image and neighbours shown in galleries
    at.run()
    at.switch_page("pages/clusters.py").run()
    assert not at.exception
    html = " ".join(h.proto.body for h in at.get("html"))
    assert "label &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html and "<img src=x" not in html
    labels = [b.label for b in at.button if "img src" in b.label]
    assert all(label.count("\\<img") == 1 for label in labels)     # Markdown escaped in button labels


def test_figures_escape_class_names():
    import numpy as np
    import pandas as pd

    table = pd.DataFrame({"index": range(4), "cluster": [0, 0, 1, 1], "label": [0, 1, 0, 1],
                          "confidence": [0.9] * 4})
    names = [HTML_CLASS, "100%{customdata[0]}"]
    fig = latent_figure(np.zeros((4, 2)), np.zeros((2, 2)), table, "true label", names)
    text = json.dumps(fig.to_plotly_json())
    assert "<img" not in text and "%{customdata[0]}</" not in text and "&lt;img" in text
    conf = confusion(table, 2, {"class_names": names})
    assert all("<" not in str(x) for x in confusion_figure(conf).data[0].x)


def test_exported_csv_neutralises_formulas(hostile_run, tmp_path):
    _, run = hostile_run
    out = tmp_path / "labels.csv"
    icbpl("export", run, "--out", out)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    cells = [v for row in rows for k, v in row.items() if k in ("path", "label_name", "matched_class_name")]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    assert f"'{FORMULA_CLASS}/{FORMULA_FILE}" in cells and "'+plus" in cells and "'@at" in cells
    app_table = export_table(open_run(run))                        # the app's Export page: the same table
    assert app_table["path"].tolist() == [r["path"] for r in rows]
