"""The Streamlit app, page by page, with streamlit.testing's AppTest.

Two finished runs are made once for the module with the command line (small settings):
a labelled digits run and an unlabelled run of a flat folder of PNGs written from digits.
Every page must render on both without an exception or an error message, and its
widgets must drive the state they should.
"""
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from icbpl_app import form, state
from tests.helpers import APP, run_folder, start_icbpl, write_digit_pngs

PAGES = ["pages/data.py", "pages/train.py", "pages/latent.py", "pages/clusters.py", "pages/metrics.py",
         "pages/export.py"]
TIMEOUT = 180      # the first latent page fits UMAP (numba compiles on first use)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(runs_dir, labelled run folder, unlabelled run folder), trained in parallel with the CLI."""
    runs_dir = tmp_path_factory.mktemp("app-runs")
    flat = tmp_path_factory.mktemp("flat-pngs")
    write_digit_pngs(flat, 240)
    labelled = start_icbpl("train", "--dataset", "digits", "--limit", 300, "--backbone", "scratch-mlp",
                           "--neighbours-from", "pixels", "--epochs", 3, "--runs-dir", runs_dir, "--quiet")
    unlabelled = start_icbpl("train", "--dataset", "folder", "--data-root", flat, "--backbone", "scratch-mlp",
                             "--n-clusters", 6, "--epochs", 2, "--seed", 1, "--runs-dir", runs_dir, "--quiet")
    return runs_dir, _finish(labelled), _finish(unlabelled)


def _finish(proc) -> Path:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return run_folder(out)


@pytest.fixture
def runs_env(runs, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(runs[0]))
    return runs


def make_app(page: str | None = None, run: Path | None = None, **session) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if run is not None:
        at.session_state["run_id"] = run.name
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    if page is not None and page != "pages/data.py":
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info] \
        + [s.value for s in at.success] + [w.value for w in at.warning] + [h.value for h in at.subheader] \
        + [t.value for t in at.title]
    return "\n".join(str(p) for p in parts)


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return m.value
    raise AssertionError(f"no metric {label!r}: {[m.label for m in at.metric]}")


def plotly_figures(at: AppTest) -> list[dict]:
    import json
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def decode(value) -> np.ndarray:
    """A plotly array from the figure JSON: a list, or a base64 typed array {dtype, bdata, shape}."""
    import base64
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            array = array.reshape([int(x) for x in str(shape).split(",")] if isinstance(shape, str) else shape)
        return array
    return np.asarray(value)


# -- every page renders ------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_labelled_run(runs_env, page):
    _, labelled, _ = runs_env
    at = make_app(page, labelled)
    assert_clean(at)
    assert at.session_state["run_id"] == labelled.name


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_unlabelled_run(runs_env, page):
    _, _, unlabelled = runs_env
    at = make_app(page, unlabelled)
    assert_clean(at)


def test_pages_say_so_when_there_is_no_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "empty"))
    for page in PAGES:
        at = make_app(page)
        assert_clean(at)
    at = make_app("pages/latent.py")
    assert "No run selected" in texts(at)


# -- pages show what they should ---------------------------------------------------------------------

def test_latent_page_draws_webgl_points_and_labelled_pedcc(runs_env):
    _, labelled, _ = runs_env
    at = make_app("pages/latent.py", labelled)
    (fig,) = plotly_figures(at)
    gl = [t for t in fig["data"] if t["type"] == "scattergl"]
    pedcc = [t for t in fig["data"] if t.get("name") == "PEDCC centroids"]
    assert len(gl) >= 2 and len(pedcc) == 1
    assert pedcc[0]["text"][0] == "C0" and pedcc[0]["marker"]["symbol"] == "star"
    assert (labelled / "projection-umap.npz").is_file()           # cached on disk in the run folder
    # colour by confidence: one trace with a colour bar; by true label: one trace per class
    at.radio(key="latent_colour").set_value("confidence").run()
    assert_clean(at)
    (fig,) = plotly_figures(at)
    assert sum(t["type"] == "scattergl" for t in fig["data"]) == 1
    assert "colorbar" in [t for t in fig["data"] if t["type"] == "scattergl"][0]["marker"]
    at.radio(key="latent_colour").set_value("true label").run()
    (fig,) = plotly_figures(at)
    assert any(t.get("name", "").startswith("label ") for t in fig["data"])


def test_latent_page_without_labels_offers_no_true_label_colouring(runs_env):
    _, _, unlabelled = runs_env
    at = make_app("pages/latent.py", unlabelled)
    assert "true label" not in at.radio(key="latent_colour").options


def test_latent_projection_is_cached_not_recomputed(runs_env, monkeypatch):
    from icbpl_app import projection

    _, labelled, _ = runs_env
    make_app("pages/latent.py", labelled)              # makes sure it exists
    calls = []
    monkeypatch.setattr(projection, "fit", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(
        AssertionError("refitted")))
    at = make_app("pages/latent.py", labelled)
    at.radio(key="latent_colour").set_value("confidence").run()
    assert_clean(at)
    assert calls == []


def test_latent_selection_shows_a_gallery(runs_env):
    """The selection state the browser sends (customdata carries the image index) opens the gallery."""
    _, labelled, _ = runs_env
    at = make_app("pages/latent.py", labelled)
    assert "Selection: 0 images" in texts(at)
    # AppTest cannot drag a box; the browser test does. Here: the stored selection feeds Export.
    at.session_state["selections"] = {labelled.name: [3, 5, 8]}
    at.switch_page("pages/export.py").run()
    at.radio(key="export_scope").set_value("current selection").run()
    assert_clean(at)
    button = at.get("download_button")[0]
    assert "3 rows" in button.proto.label


def test_latent_selection_survives_a_change_of_colouring(runs_env):
    """Each colouring is another figure (another chart widget, empty): the selection made on one is
    kept, drawn selected on the next, and cleared only by the user."""
    _, labelled, _ = runs_env
    at = make_app("pages/latent.py", labelled,
                  latent_selection={labelled.name: {"indices": [3, 5, 8], "colour": "cluster"}})
    assert "Selection: 3 images" in texts(at)
    at.radio(key="latent_colour").set_value("confidence").run()
    assert_clean(at)
    assert "Selection: 3 images" in texts(at)
    (fig,) = plotly_figures(at)
    (images,) = [t for t in fig["data"] if t["type"] == "scattergl"]
    custom = decode(images["customdata"])
    assert sorted(custom[images["selectedpoints"], 0].astype(int)) == [3, 5, 8]
    assert at.session_state["selections"][labelled.name] == [3, 5, 8]     # what Export offers
    at.button(key="latent_clear").click().run()
    assert "Selection: 0 images" in texts(at)


def test_latent_page_draws_a_big_run_decimated_and_says_so(runs_env, monkeypatch):
    """Past the draw limit (here lowered to 120 of 300 points): a sample keeping every cluster, the
    PEDCC stars, each point's image index and hover cell, and the hover atlas of the drawn images."""
    import json

    import pandas as pd

    from icbpl_app import sampling

    _, labelled, _ = runs_env
    monkeypatch.setattr(sampling, "MAX_DRAWN", 120)
    at = make_app("pages/latent.py", labelled)
    assert_clean(at)
    table = pd.read_csv(labelled / "assignments.csv")
    drawn = sampling.drawn_rows(table["cluster"].to_numpy(), 120)
    assert f"Showing {len(drawn):,} of 300 points" in texts(at)
    (fig,) = plotly_figures(at)
    gl = [t for t in fig["data"] if t["type"] == "scattergl"]
    custom = np.concatenate([decode(t["customdata"]) for t in gl])
    index = custom[:, 0].astype(np.int64)
    assert sorted(index) == sorted(drawn)
    assert set(table["cluster"].to_numpy()[index]) == set(table["cluster"])      # every cluster drawn
    assert np.array_equal(drawn[custom[:, 3].astype(np.int64)], index)           # hover cells
    (pedcc,) = [t for t in fig["data"] if t.get("name") == "PEDCC centroids"]
    assert len(pedcc["text"]) == len(np.load(labelled / "pedcc.npy"))
    manifest = json.loads((labelled / "thumbs" / "manifest.json").read_text())
    assert f"-rows-{len(drawn)}-" in manifest["key"] and len(manifest["tiles"]) == 1
    monkeypatch.setattr(sampling, "MAX_DRAWN", 10**9)
    assert "Showing" not in texts(make_app("pages/latent.py", labelled))          # back to every point


def test_metrics_page_labelled(runs_env):
    _, labelled, _ = runs_env
    at = make_app("pages/metrics.py", labelled)
    for label in ("ACC (Hungarian)", "NMI", "ARI", "Many-to-one ACC"):
        value = float(metric(at, label))
        assert -1.0 <= value <= 1.0
    import json
    metrics = json.loads((labelled / "metrics.json").read_text())
    assert float(metric(at, "ACC (Hungarian)")) == pytest.approx(metrics["acc"], abs=1e-3)
    (fig,) = plotly_figures(at)
    heat = fig["data"][0]
    assert heat["type"] == "heatmap" and heat["texttemplate"] == "%{text}"
    counts = decode(heat["z"])
    assert counts.sum() == 300 and counts.shape[0] == 10           # every image once, one row per cluster
    table = np.asarray(counts)
    assert np.trace(table[:, :table.shape[1]]) == pytest.approx(metrics["acc"] * 300, abs=0.5)  # matching on the diagonal
    assert "Per-cluster purity" in texts(at)


def test_metrics_page_clicks_show_images(runs_env):
    """A heatmap cell shows the images of that cluster and true class; a purity row, its cluster's."""
    import pandas as pd

    _, labelled, _ = runs_env
    table = pd.read_csv(labelled / "assignments.csv")
    cluster, label = int(table.loc[0, "cluster"]), int(table.loc[0, "label"])
    at = make_app("pages/metrics.py", labelled, metrics_pick={labelled.name: {"cluster": cluster, "label": label}})
    assert_clean(at)
    expected = table.loc[(table["cluster"] == cluster) & (table["label"] == label), "index"].tolist()
    (body,) = [h.proto.body for h in at.get("html") if "icbpl-grid" in h.proto.body]
    assert sorted(int(x.split('"')[0]) for x in body.split('data-index="')[1:]) == sorted(expected)[:60]
    assert f"Cluster {cluster}, true class {label}" in texts(at)
    at.session_state["metrics_pick"] = {labelled.name: {"cluster": cluster}}
    at.run()
    assert f"images 1-{min(60, (table['cluster'] == cluster).sum())} of {(table['cluster'] == cluster).sum()}" \
        in [h.proto.body for h in at.get("html") if "icbpl-grid" in h.proto.body][0]
    at.button(key="close-pick-main").click().run()
    assert not [h for h in at.get("html") if "icbpl-grid" in h.proto.body]


def test_metrics_page_unlabelled_says_so(runs_env):
    _, _, unlabelled = runs_env
    at = make_app("pages/metrics.py", unlabelled)
    assert "no labels" in texts(at)
    assert metric(at, "Clusters used").endswith("/6")
    assert {"ACC (Hungarian)", "NMI"}.isdisjoint(m.label for m in at.metric)


def test_compare_two_runs(runs_env, tmp_path, monkeypatch):
    """The sidebar's compare picker shows the second run beside the first, with their agreement."""
    runs_dir, labelled, _ = runs_env
    import shutil
    copy = runs_dir / (labelled.name + "-copy")
    if not copy.exists():
        shutil.copytree(labelled, copy)
    at = make_app("pages/metrics.py", labelled)
    at.sidebar.selectbox[1].select(copy.name).run()
    assert_clean(at)
    assert at.session_state["compare_id"] == copy.name
    assert "Agreement between the two clusterings" in texts(at)
    assert "NMI 1.000" in texts(at)
    at.switch_page("pages/latent.py").run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 2
    shutil.rmtree(copy)


def test_clusters_page_click_shows_neighbours(runs_env):
    _, labelled, _ = runs_env
    at = make_app("pages/clusters.py", labelled)
    assert metric(at, "Purity").endswith("%")
    biggest = max(at.selectbox(key="cl_cluster").options, key=lambda o: int(o.split("(")[1].split()[0]))
    at.selectbox(key="cl_cluster").select(int(biggest.split()[1])).run()
    buttons = [b for b in at.button if b.key and b.key.startswith("most-")]
    assert len(buttons) >= 3
    target = buttons[2]
    index = int(target.key.rsplit("-", 1)[1])
    target.click().run()
    assert_clean(at)
    assert at.session_state["nb_query"] == index
    assert f"image **#{index}**" in texts(at)
    galleries = [h.proto.body for h in at.get("html") if "icbpl-grid" in h.proto.body]
    assert any("In latent space" in g for g in galleries) and any("In backbone feature space" in g for g in galleries)
    assert any(f'data-index="{index}"' in g for g in galleries)
    # the click scrolls the page to the neighbours (a script that finds the anchor above them)
    scripts = [h.proto.body for h in at.get("html") if "scrollIntoView" in h.proto.body]
    assert len(scripts) == 1 and "icbpl-anchor-neighbours" in scripts[0] and "<" not in scripts[0][8:-9]
    assert any('id="icbpl-anchor-neighbours"' in h.proto.body for h in at.get("html"))
    at.run()                                                      # only once: a later rerun stays put
    assert not [h for h in at.get("html") if "scrollIntoView" in h.proto.body]


def test_galleries_show_file_names_and_page_sort_and_filter(runs_env):
    """A selection of every image: pages of 60 (no cap), sorted and filtered by the gallery's controls,
    each image captioned with its file name (the whole id on hover)."""
    _, _, unlabelled = runs_env
    table = __import__("pandas").read_csv(unlabelled / "assignments.csv")
    at = make_app("pages/latent.py", unlabelled,
                  latent_selection={unlabelled.name: {"indices": table["index"].tolist(), "colour": "cluster"}})
    assert_clean(at)

    def gallery():
        (body,) = [h.proto.body for h in at.get("html") if "icbpl-grid" in h.proto.body]
        return body

    key = f"latent-gallery-{unlabelled.name}"
    assert f"images 1-60 of {len(table)}" in gallery()
    assert "img_0000.png" in gallery() and 'title="#0 · c' in gallery()
    at.number_input(key=f"{key}:page").set_value(4).run()
    assert f"images 181-{len(table)} of {len(table)}" in gallery()                # 240 images: the last page
    at.selectbox(key=f"{key}:sort").select("confidence").run()
    at.toggle(key=f"{key}:desc").set_value(True).run()
    at.number_input(key=f"{key}:page").set_value(1).run()
    first = int(gallery().split('data-index="')[1].split('"')[0])
    assert first == int(table.loc[table["confidence"].idxmax(), "index"])
    at.multiselect(key=f"{key}:clusters").select(2).run()
    shown = [int(x.split('"')[0]) for x in gallery().split('data-index="')[1:]]
    assert shown and set(table.set_index("index").loc[shown, "cluster"]) == {2}


def test_export_page_whole_run_and_command(runs_env):
    _, labelled, _ = runs_env
    at = make_app("pages/export.py", labelled)
    assert_clean(at)
    assert "300 rows" in at.get("download_button")[0].proto.label
    command = at.code[0].value
    import json
    threads = json.loads((labelled / "metrics.json").read_text())["threads"]   # the run's own thread count
    assert command.startswith(f"OMP_NUM_THREADS={threads} icbpl train --dataset digits --limit 300 "
                              "--backbone scratch-mlp")
    assert "--neighbours-from pixels" in command
    assert "--epochs 3" in command


def test_a_reload_reattaches_to_the_run_in_the_url(runs_env):
    """A browser reload loses session state; the run id in the URL brings the same run back."""
    _, _, unlabelled = runs_env
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["run"] = unlabelled.name
    at.switch_page("pages/train.py").run()
    assert_clean(at)
    assert at.session_state["run_id"] == unlabelled.name
    assert unlabelled.name in texts(at)


def test_train_page_on_a_finished_run(runs_env):
    _, labelled, _ = runs_env
    at = make_app("pages/train.py", labelled)
    assert metric(at, "Epoch") == "3/3"
    assert any("Finished" in s.value for s in at.success)
    assert len(plotly_figures(at)) == 2                    # losses per term, ACC/NMI


def test_train_page_says_when_the_final_clusters_average_the_views(runs_env, tmp_path, monkeypatch):
    import json
    import shutil
    _, labelled, _ = runs_env
    at = make_app("pages/train.py", labelled)
    assert_clean(at)
    views = json.loads((labelled / "metrics.json").read_text())["views_averaged"]
    assert views > 0 and f"mean latent over it and its {views} augmented views" in texts(at)
    copy = tmp_path / "runs" / labelled.name
    shutil.copytree(labelled, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({**metrics, "views_averaged": 0}))   # --no-average-views
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(copy.parent))
    assert "mean latent" not in texts(make_app("pages/train.py", copy))


def test_train_page_unlabelled_run_has_no_acc(runs_env):
    _, _, unlabelled = runs_env
    at = make_app("pages/train.py", unlabelled)
    assert metric(at, "ACC") == "no labels"


# -- Data & model widgets ----------------------------------------------------------------------------

def test_data_page_defaults_are_digits_and_ready(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    at = make_app()
    assert_clean(at)
    assert at.selectbox(key="d_dataset").value == "digits"
    assert metric(at, "Images") == "1,797" and metric(at, "Classes") == "10"
    assert at.number_input(key="d_n_clusters").value == 10
    assert at.button(key="d_start").disabled is False
    from icbpl_core.datasets import get_entry
    draft = at.session_state["draft"]
    assert draft["dataset"] == "digits" and draft["backbone"] == get_entry("digits").default_backbone
    recipe = state.train_defaults("digits")           # the dataset's own training recipe, as `train` uses
    assert {k: draft[k] for k in ("epochs", "hidden_dim", "w_mmd")} == {k: recipe[k] for k in ("epochs", "hidden_dim", "w_mmd")}


def test_every_form_parameter_has_its_widget_with_the_tables_range(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    at = make_app()
    widgets = {w.key: w for kind in ("number_input", "selectbox", "checkbox", "text_input") for w in at.get(kind)}
    shown_elsewhere = {"data_root": "d_root_opt", "download": None}     # by source; only when data is missing
    for field in form.FIELDS.values():
        key = shown_elsewhere.get(field.name, field.key)
        if key is None:
            continue
        widget = widgets[key]
        if field.kind == "number":        # the range is in the help and checked by the page, not the widget
            assert (widget.min, widget.max) == (None, None), field.name
            if field.param.describe_range():
                assert field.param.describe_range()[1:] in widget.help, field.name
        elif field.kind == "choice" and field.name != "dataset":      # backbones: "name (offline)"
            names = [o.split(" (")[0] for o in widget.options] if field.name == "backbone" else widget.options
            assert list(names) == field.options(), field.name


def test_data_page_widgets_drive_the_draft(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    at = make_app()
    at.number_input(key="d_limit").set_value(300).run()
    at.number_input(key="d_epochs").set_value(4).run()
    at.number_input(key="d_n_clusters").set_value(7).run()
    at.number_input(key="d_w_mmd").set_value(2.5).run()
    assert_clean(at)
    draft = at.session_state["draft"]
    assert draft["limit"] == 300 and draft["epochs"] == 4 and draft["n_clusters"] == 7 and draft["w_mmd"] == 2.5
    assert metric(at, "Images") == "300"
    # the draft survives a visit to another page
    at.switch_page("pages/train.py").run()
    assert "first 300 images" in texts(at) and "K = 7" in texts(at)
    at.switch_page("pages/data.py").run()
    assert at.number_input(key="d_n_clusters").value == 7


def test_data_page_refuses_bad_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ICBPL_DATA_ROOTS", str(tmp_path))
    at = make_app()
    at.number_input(key="d_limit").set_value(5).run()
    at.number_input(key="d_n_clusters").set_value(8).run()
    assert any("more than the 5 images" in e.value for e in at.error)
    assert at.button(key="d_start_disabled").disabled
    at.number_input(key="d_limit").set_value(0).run()
    at.selectbox(key="d_mode").set_value("head").run()
    assert any("needs a pretrained backbone" in e.value for e in at.error)
    at.selectbox(key="d_mode").set_value("auto").run()
    at.radio(key="d_source").set_value("folder").run()
    at.text_input(key="d_folder").input(str(tmp_path / "missing")).run()
    assert any("is not a folder" in w.value for w in at.warning)
    assert at.button(key="d_start_disabled").disabled
    assert not at.exception


def ready_line(at: AppTest) -> str:
    return " ".join(s.value for s in at.success if s.value.startswith("Ready:"))


def test_data_page_checks_the_k_it_shows(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    at = make_app()
    at.number_input(key="d_n_clusters").set_value(3).run()
    assert "K = 3," in ready_line(at)
    at.number_input(key="d_n_clusters").set_value(1).run()      # below the table's range: refused, said why
    assert not at.success and any("Number of clusters K: must be between 2 and 1000, got 1" in e.value
                                  for e in at.error)
    assert at.button(key="d_start_disabled").disabled and "d_start" not in [b.key for b in at.button]
    at.number_input(key="d_n_clusters").set_value(5).run()
    assert "K = 5," in ready_line(at) and at.button(key="d_start").disabled is False
    assert not at.exception


def test_data_page_marks_backbones_that_would_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))          # an empty hub cache
    at = make_app()
    labels = at.selectbox(key="d_backbone").options
    assert "mobilenet_v2 (offline)" in labels and "scratch-mlp (offline)" in labels
    assert "resnet18 (missing)" in labels                 # the tests run with ICBPL_OFFLINE set
    at.selectbox(key="d_backbone").set_value("resnet18").run()
    assert any("resnet18's weights (45 MB) are not on this machine" in e.value and "ICBPL_OFFLINE" in e.value
               and "mobilenet_v2" in e.value for e in at.error)
    assert at.button(key="d_start_disabled").disabled
    monkeypatch.delenv("ICBPL_OFFLINE")                               # downloads allowed: a warning, Start stays
    at = make_app(draft={"backbone": "resnet18"})
    assert "resnet18 (downloads 45 MB)" in at.selectbox(key="d_backbone").options
    assert not ready_line(at) and not at.error
    (warning,) = [w.value for w in at.warning if "resnet18" in w.value]
    assert "will be downloaded" in warning and "needs internet" in warning and "mobilenet_v2" in warning
    assert at.button(key="d_start").disabled is False
    at.selectbox(key="d_backbone").set_value("mobilenet_v2").run()
    assert "backbone mobilenet_v2" in ready_line(at) and not at.warning


def test_data_page_choices_survive_a_reload_through_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    at = make_app()
    at.number_input(key="d_limit").set_value(300).run()
    at.number_input(key="d_n_clusters").set_value(7).run()
    at.selectbox(key="d_backbone").set_value("scratch").run()
    at.number_input(key="d_lr").set_value(0.01).run()
    query = dict(at.query_params)
    assert {k: query[k] for k in ("limit", "n_clusters", "backbone", "lr")} == {
        "limit": "300", "n_clusters": "7", "backbone": "scratch", "lr": "0.01"}
    assert "epochs" not in query                       # only what differs from the dataset's defaults
    reloaded = AppTest.from_file(str(APP), default_timeout=TIMEOUT)    # a new session: only the URL is left
    reloaded.query_params.update(query)
    reloaded.run()
    assert_clean(reloaded)
    assert reloaded.number_input(key="d_n_clusters").value == 7        # not replaced by the 10 classes
    assert reloaded.number_input(key="d_limit").value == 300 and reloaded.number_input(key="d_lr").value == 0.01
    assert reloaded.selectbox(key="d_backbone").value == "scratch"
    assert "digits (300 images), recipe dataset, backbone scratch, K = 7" in ready_line(reloaded)


def test_data_page_ignores_hostile_url_values(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"n_clusters": "1", "epochs": "1e999", "lr": "nan", "limit": "-5", "seed": "x" * 5000,
                            "dataset": "<script>alert(1)</script>", "backbone": "timm:../../etc",
                            "pretrained": "yes", "download": "true", "data_root": "/etc\x00", "evil": "1"})
    at.run()
    assert_clean(at)
    assert at.selectbox(key="d_dataset").value == "digits" and at.number_input(key="d_n_clusters").value == 10
    assert at.number_input(key="d_limit").value == 0 and at.number_input(key="d_lr").value == 1e-3
    assert at.checkbox(key="d_pretrained").value is True
    assert ready_line(at).startswith("Ready: digits (1,797 images)")
    # a folder outside the data roots, from a link: refused in words, nothing listed, no start
    monkeypatch.setenv("ICBPL_DATA_ROOTS", str(tmp_path / "data"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"dataset": "folder", "data_root": "/etc"})
    at.run()
    assert not at.exception
    assert at.text_input(key="d_folder").value == "/etc"
    assert any("outside the folders this app may open" in w.value for w in at.warning)
    assert at.button(key="d_start_disabled").disabled


def test_data_page_folder_and_zip(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ICBPL_DATA_ROOTS", str(tmp_path))
    folder = tmp_path / "pngs"
    write_digit_pngs(folder, 40, classes=True)
    (folder / "class_0" / "notes.txt").write_text("not an image")
    at = make_app()
    at.radio(key="d_source").set_value("folder").run()
    at.text_input(key="d_folder").input(str(folder)).run()
    assert_clean(at)
    assert metric(at, "Images") == "40"
    assert at.session_state["draft"]["dataset"] == "folder"
    assert any("skipped" in e.label for e in at.expander)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*.png"))[:20]:
            zf.write(path, f"digits/{path.relative_to(folder)}")
    at.radio(key="d_source").set_value("archive").run()
    at.file_uploader(key="d_upload").upload("digits.zip", buffer.getvalue(), "application/zip").run()
    assert_clean(at)
    assert metric(at, "Images") == "20"
    assert at.session_state["draft"]["dataset"] == "zip"

    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("../escape.png", b"x")
    at.file_uploader(key="d_upload").set_value(("evil.zip", hostile.getvalue(), "application/zip")).run()
    assert not at.exception
    assert any("unsafe zip" in w.value.lower() for w in at.warning)
    assert at.button(key="d_start_disabled").disabled


# -- errors are messages -----------------------------------------------------------------------------

def test_a_damaged_run_gives_messages_not_tracebacks(runs_env):
    import shutil

    runs_dir, labelled, _ = runs_env
    broken = runs_dir / (labelled.name + "-broken")
    shutil.copytree(labelled, broken)
    (broken / "latents.npy").unlink()
    (broken / "projection-umap.npz").unlink(missing_ok=True)
    (broken / "features.npy").write_bytes(b"garbage")
    try:
        for page in ("pages/latent.py", "pages/clusters.py"):
            at = make_app(page, broken)
            assert not at.exception
            assert at.error, page
            assert all("Traceback" not in e.value for e in at.error)
    finally:
        shutil.rmtree(broken)


def test_the_streamlit_internals_the_app_relies_on_are_still_there():
    """pages/common.py's entry() and serve_media() each read one Streamlit internal; if Streamlit
    moves them this fails, before users lose page URLs or hover thumbnails."""
    import inspect

    from streamlit.runtime import Runtime
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.pages_manager import PagesManager

    assert hasattr(PagesManager, "uses_pages_directory")
    assert isinstance(inspect.getattr_static(Runtime, "media_file_mgr"), property)
    assert list(inspect.signature(MediaFileManager.add).parameters)[1:4] == ["path_or_data", "mimetype", "coordinates"]
