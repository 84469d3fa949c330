"""Curate on the Clusters page and the curated CSV on Export, with streamlit.testing's AppTest,
on a finished digits run trained for this module (its own, since edits change what it shows)."""
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from icbpl_core.store.curation import Curation
from icbpl_core.store.runs import Run
from tests.app.test_pages import assert_clean, decode, make_app, plotly_figures, texts
from tests.helpers import icbpl, run_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("curate-app-runs")
    run = run_folder(icbpl("train", "--dataset", "digits", "--limit", "240", "--backbone", "scratch-mlp",
                           "--neighbours-from", "pixels", "--epochs", "2", "--runs-dir", runs, "--quiet"))
    from icbpl_app.projection import compute_projection
    compute_projection(Run(run))        # once: every copy's latent page reads it
    return run


@pytest.fixture
def run_dir(trained, tmp_path, monkeypatch):
    """A fresh copy of the trained run, with no edits, as the app's only run."""
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / trained.name)
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(runs))
    return runs / trained.name


def clusters_page(run_dir):
    at = make_app("pages/clusters.py", run_dir)
    assert_clean(at)
    return at


def outcome(at) -> str:
    assert_clean(at)
    return " ".join(s.value for s in at.success)


def test_flag_undo_redo_name_and_merge_from_the_page(run_dir):
    at = clusters_page(run_dir)
    at.text_input(key="cur_typed").set_value("0, 1, 5-6").run()
    assert "4 image(s) selected: #0, #1, #5, #6" in texts(at)
    at.selectbox(key="cur_flag_as").set_value("unsure").run()
    at.button(key="cur_flag_go").click().run()
    assert "Edit 1: flagged 4 images (0-1, 5-6) unsure." in outcome(at)
    assert at.text_input(key="cur_typed").value == ""          # the selection starts afresh
    assert list(Curation(Run(run_dir)).state().flag[[0, 1, 5, 6]]) == ["unsure"] * 4

    at.button(key="cur_undo").click().run()
    assert "Edit 2: undo of edit 1." in outcome(at)
    assert not Curation(Run(run_dir)).state().edited.any()
    at.button(key="cur_redo").click().run()
    assert "Edit 3: redo of edit 1." in outcome(at)

    cluster = at.selectbox(key="cl_cluster").value
    at.text_input(key=f"cur_name_{cluster}").set_value("loops").run()
    at.button(key="cur_name_save").click().run()
    assert f"named cluster {cluster} 'loops'" in outcome(at)
    assert f"cluster {cluster} · loops" in at.selectbox(key="cl_cluster").format_func(cluster)

    two = at.multiselect(key="cur_merge").options[:2]
    a, b = (int(str(o).split()[1]) for o in two)
    at.multiselect(key="cur_merge").set_value([a, b]).run()
    at.button(key="cur_merge_go").click().run()
    assert f"merged clusters {b} into {a}" in outcome(at)
    state = Curation(Run(run_dir)).state()
    assert state.size(b) == 0 and (state.cluster[state.raw == b] == a).all()
    history = at.dataframe[-1].value
    assert list(history["what"])[0] == f"merged clusters {b} into {a}" and len(history) == 5


def test_split_shows_its_preview_before_it_is_applied(run_dir):
    at = clusters_page(run_dir)
    cluster = at.selectbox(key="cl_cluster").value
    at.button(key="cur_split_preview").click().run()
    assert_clean(at)
    preview = [m.value for m in at.markdown if "**Preview:**" in m.value]
    assert preview and f"cluster {cluster} would become {cluster} (" in preview[0]
    assert not Curation(Run(run_dir)).entries()                # nothing written yet
    at.button(key="cur_split_apply").click().run()
    assert f"split cluster {cluster} into {cluster}, " in outcome(at)
    assert len(Curation(Run(run_dir)).state().clusters()) == 11


def test_images_picked_in_the_gallery_are_moved(run_dir):
    at = clusters_page(run_dir)
    at.toggle(key="cl_pick").set_value(True).run()
    gallery = [b for b in at.button if b.key and b.key.startswith("least-")]
    picked = [int(b.key.rsplit("-", 1)[1]) for b in gallery[:2]]
    gallery[0].click().run()
    next(b for b in at.button if b.key == gallery[1].key).click().run()
    assert sorted(at.multiselect(key=f"cur_pick_{run_dir.name}").value) == sorted(picked)
    source = at.selectbox(key="cl_cluster").value
    target = next(c for c in at.selectbox(key="cur_move_to").options if int(str(c).split()[1]) != source)
    target = int(str(target).split()[1])
    at.selectbox(key="cur_move_to").set_value(target).run()
    at.button(key="cur_move_go").click().run()
    assert f"to cluster {target}" in outcome(at)
    assert set(Curation(Run(run_dir)).state().cluster[picked]) == {target}


def test_bad_ids_say_what_is_wrong_and_change_nothing(run_dir):
    at = clusters_page(run_dir)
    at.text_input(key="cur_typed").set_value("3, 9999").run()
    assert any("no image 9999" in e.value for e in at.error)
    assert at.button(key="cur_flag_go").disabled
    at.text_input(key="cur_typed").set_value("3, x").run()
    assert any("'x' is not an image id" in e.value for e in at.error)
    assert not Curation(Run(run_dir)).entries()


def test_a_run_being_trained_shows_that_curation_waits(run_dir):
    Run(run_dir).set_status("running")      # this process: alive, so the run reads as training
    at = clusters_page(run_dir)
    assert any("being trained" in i.value and "Curation waits for it to finish" in i.value for i in at.info)
    assert not [b for b in at.button if b.key and b.key.startswith("cur_")]


def test_export_offers_the_raw_and_the_curated_csv(run_dir):
    Curation(Run(run_dir)).flag([2], "verified")
    at = make_app("pages/export.py", run_dir)
    assert_clean(at)
    raw = at.get("download_button")
    labels = [d.proto.label for d in raw]
    assert any(label.startswith("Download 240 rows") for label in labels) and "Download curated CSV" in labels
    assert "curated_cluster" in texts(at)


def test_two_tabs_editing_one_run_lose_no_edit(run_dir):
    first, second = clusters_page(run_dir), clusters_page(run_dir)      # two sessions, each with its state
    first.text_input(key="cur_typed").set_value("7").run()
    second.text_input(key="cur_typed").set_value("8").run()
    first.button(key="cur_flag_go").click().run()
    second.selectbox(key="cur_flag_as").set_value("verified").run()
    second.button(key="cur_flag_go").click().run()                    # made on a page that had not seen edit 1
    assert "Edit 2: flagged image 8 verified." in outcome(second)
    state = Curation(Run(run_dir)).state()
    assert state.flag[7] == "outlier" and state.flag[8] == "verified"
    first.run()
    assert len(first.dataframe[-1].value) == 2                        # the first tab sees both on its next run


def test_a_log_made_before_the_run_was_trained_again_is_shown_not_replayed(run_dir):
    import pandas as pd

    Curation(Run(run_dir)).flag([0], "outlier")
    table = pd.read_csv(run_dir / "assignments.csv")
    table["cluster"] = table["cluster"].to_numpy()[::-1]
    table.to_csv(run_dir / "assignments.csv", index=False)
    at = clusters_page(run_dir)
    assert any("shown without edits" in w.value and "trained again" in w.value for w in at.warning)


def test_export_shows_curated_rows_once_there_are_edits_and_survives_a_stale_log(run_dir):
    import pandas as pd

    Curation(Run(run_dir)).name(0, "zero")
    at = make_app("pages/export.py", run_dir)
    assert_clean(at)
    assert "cluster_name" in at.dataframe[0].value.columns
    table = pd.read_csv(run_dir / "assignments.csv")
    table["cluster"] = table["cluster"].to_numpy()[::-1]          # trained again: the log no longer applies
    table.to_csv(run_dir / "assignments.csv", index=False)
    at = make_app("pages/export.py", run_dir)
    assert not at.exception and "cluster_name" not in at.dataframe[0].value.columns
    assert any("trained again" in e.value for e in at.error)     # the curated download says why it is missing


# -- the curated labelling and acting on a selection on the Latent space and metrics pages -----------

def two_clusters(run_dir) -> tuple[int, int]:
    sizes = np.bincount(Curation(Run(run_dir)).state().raw)
    big, second = (int(c) for c in np.argsort(-sizes)[:2])
    return big, second


def legend(fig) -> list[str]:
    return [t["name"] for t in fig["data"] if t["type"] == "scattergl"]


def test_latent_page_shows_the_curated_clusters_first_and_the_models_on_request(run_dir):
    big, second = two_clusters(run_dir)
    Curation(Run(run_dir)).merge([big, second])
    Curation(Run(run_dir)).name(big, "loops")
    at = make_app("pages/latent.py", run_dir)
    assert_clean(at)
    key = f"labelling-latent-{run_dir.name}"
    assert at.session_state[key] == "curated"
    names = legend(plotly_figures(at)[0])
    assert any(n.startswith(f"cluster {big} · loops (") for n in names)
    assert not any(n.startswith(f"cluster {second} ") for n in names)          # merged away
    at.session_state["labelling"] = {run_dir.name: "model's clusters"}           # the toggle's choice, kept per run
    at.run()
    names = legend(plotly_figures(at)[0])
    assert f"cluster {big} · loops" not in " ".join(names) and any(n.startswith(f"cluster {second} (") for n in names)
    at.switch_page("pages/metrics.py").run()                                     # the choice follows to metrics
    assert at.session_state[f"labelling-metrics-{run_dir.name}"] == "model's clusters"


def test_a_latent_selection_is_moved_and_flagged_through_the_edit_log(run_dir):
    big, second = two_clusters(run_dir)
    at = make_app("pages/latent.py", run_dir,
                  latent_selection={run_dir.name: {"indices": [0, 1, 2], "colour": "cluster"}})
    assert_clean(at)
    assert "Selection: 3 images" in texts(at)
    act = f"latent-act-{run_dir.name}"
    at.selectbox(key=f"{act}:to").set_value(second).run()
    at.button(key=f"{act}:move").click().run()
    assert f"Edit 1: moved 3 images (0-2) to cluster {second}." in outcome(at)
    assert set(Curation(Run(run_dir)).state().cluster[[0, 1, 2]]) == {second}
    assert at.session_state[f"labelling-latent-{run_dir.name}"] == "curated"     # shows what was done
    assert "Selection: 3 images" in texts(at)                                    # the selection stays
    at.selectbox(key=f"{act}:flag_as").set_value("unsure").run()
    at.button(key=f"{act}:flag").click().run()
    assert "Edit 2: flagged 3 images (0-2) unsure." in outcome(at)
    at.switch_page("pages/clusters.py").run()                                    # the same log, the same history
    history = at.dataframe[-1].value
    assert list(history["what"]) == ["flagged 3 images (0-2) unsure", f"moved 3 images (0-2) to cluster {second}"]
    at.button(key="cur_undo").click().run()
    assert "Edit 3: undo of edit 2." in outcome(at)


def test_a_selection_of_a_run_being_trained_cannot_be_curated_and_says_why(run_dir):
    Run(run_dir).set_status("running")
    at = make_app("pages/latent.py", run_dir,
                  latent_selection={run_dir.name: {"indices": [0, 1], "colour": "cluster"}})
    assert not at.exception
    assert any("being trained" in i.value and "can be moved or flagged when it has" in i.value for i in at.info)
    assert not [b for b in at.button if b.key and b.key.startswith("latent-act-")]


def test_metrics_page_counts_curated_clusters_and_its_drill_down_acts_on_them(run_dir):
    big, second = two_clusters(run_dir)
    Curation(Run(run_dir)).merge([big, second])
    Curation(Run(run_dir)).name(big, "loops")
    at = make_app("pages/metrics.py", run_dir)
    assert_clean(at)
    heatmap = plotly_figures(at)[0]
    rows = [str(y) for y in heatmap["data"][0]["y"]]
    assert any(r.startswith(f"cluster {big} · loops → ") for r in rows)
    assert not any(r.startswith(f"cluster {second} ") for r in rows)             # emptied by the merge
    purity = at.dataframe[0].value
    assert "loops" in purity["name"].tolist() and second not in purity["cluster"].tolist()
    # a heatmap cell's images, in the curated labelling: the merged cluster holds both
    at.session_state["metrics_pick"] = {run_dir.name: {"cluster": big, "labelling": "curated"}}
    at.run()
    assert_clean(at)
    size = int((Curation(Run(run_dir)).state().cluster == big).sum())
    assert f"**Cluster {big} · loops**: {size:,} images" in texts(at)
    at.text_input(key="metrics-only-main").set_value("0-239").run()               # narrowed to the cell's own
    act = f"metrics-act-{run_dir.name}"
    at.selectbox(key=f"{act}:flag_as").set_value("verified").run()
    at.button(key=f"{act}:flag").click().run()
    assert "Edit 3: flagged" in outcome(at) and "verified" in outcome(at)
    state = Curation(Run(run_dir)).state()
    assert set(np.flatnonzero(state.flag == "verified")) == set(np.flatnonzero(state.cluster == big))
    at.session_state["labelling"] = {run_dir.name: "model's clusters"}            # the pick was curated: dropped
    at.run()
    assert "Click a cell of the table" in texts(at)


def test_compared_runs_share_colours_of_matched_clusters_and_a_selection(run_dir):
    """A second run whose clusters are the first's renumbered: each is matched to its twin, drawn
    in its colour and named after it, and the first run's selection shows in the second plot."""
    from icbpl_app.figures import PALETTE

    other = run_dir.parent / (run_dir.name + "-renumbered")
    shutil.copytree(run_dir, other)
    table = pd.read_csv(other / "assignments.csv")
    k = int(table["cluster"].max()) + 1
    table["cluster"] = (table["cluster"] + 1) % k
    table.to_csv(other / "assignments.csv", index=False)
    named = int(table["cluster"].value_counts().idxmax())
    Curation(Run(other)).name(named, "renamed")      # the compared run is shown curated, its names kept
    at = make_app("pages/latent.py", run_dir, compare_id=other.name,
                  latent_selection={run_dir.name: {"indices": [4, 5, 6], "colour": "cluster"}})
    assert_clean(at)
    mine, theirs = plotly_figures(at)
    colour = {t["name"].split(" (")[0]: t["marker"]["color"] for t in mine["data"] if t["type"] == "scattergl"}
    for trace in (t for t in theirs["data"] if t["type"] == "scattergl"):
        cluster, twin = re.match(r"(cluster \d+) · (?:renamed )?≈ (\d+) \(", trace["name"]).groups()
        assert int(twin) == (int(cluster.split()[1]) - 1) % k
        assert trace["marker"]["color"] == colour[f"cluster {twin}"] == PALETTE[int(twin) % len(PALETTE)]
    assert any(t["name"].startswith(f"cluster {named} · renamed ≈ {(named - 1) % k} (") for t in theirs["data"])
    assert f"{other.name}** (comparison, curated)" in texts(at)
    shown = []
    for trace in (t for t in theirs["data"] if t["type"] == "scattergl" and t.get("selectedpoints")):
        shown += decode(trace["customdata"])[trace["selectedpoints"], 0].astype(int).tolist()
    assert sorted(shown) == [4, 5, 6]
