"""The whole journey in a real browser: train a small digits run from the Data page, name a
cluster and merge two on the Clusters page, flag images there and from a latent-space selection,
see the curated clusters (and the model's, on request) on Latent space, drill down from a cell of
the curated heatmap on Confusion & metrics, export the curated CSV and check its rows, reload
and find every edit still there, then retrain from the corrections and watch the new run. Then
two runs compared on Latent space: matched clusters in one colour, a selection in either plot
shown in both. Screenshots go to
tests/artifacts/journey-*.png and compare-*.png."""
import csv
import re
import time

import pytest

from icbpl_core.store.curation import Curation, parse_ids
from icbpl_core.store.runs import Run
from icbpl_core.training.corrections import from_curation
from tests.app.browser_server import app_over_new_runs, streamlit_app
from tests.app.test_browser import CHROMIUM, nav, no_exceptions, set_number, shot, wait_idle
from tests.app.test_browser_curation import edit_done, open_clusters, pick_two
from tests.helpers import run_folder, start_icbpl

pytestmark = pytest.mark.slow
from playwright import sync_api  # noqa: E402  (test_browser skips the module without chromium)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with app_over_new_runs(tmp_path_factory, "journey") as served:
        yield served


def test_train_curate_drill_down_export_and_reload(server, tmp_path):
    url, runs = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        page.set_default_timeout(60_000)
        try:
            _journey(page, url, runs, tmp_path)
        except Exception:
            shot(page, "journey-failure")
            raise
        finally:
            browser.close()


def train(page, url, runs):
    page.goto(url)
    page.get_by_text("Ready: digits").wait_for()
    wait_idle(page)
    set_number(page, "Use at most this many images (0 = all)", 300)
    set_number(page, "Epochs", 3)
    page.locator('[data-testid="stSelectbox"]', has_text="Backbone").click()
    page.keyboard.type("scratch-mlp")
    page.get_by_role("option", name="scratch-mlp (offline)", exact=True).click()
    wait_idle(page)
    ready = "Ready: digits (300 images), recipe dataset, backbone scratch-mlp, K = 10, 3 epochs"
    page.get_by_text(ready).wait_for()
    page.reload()                          # the choices are kept in the URL: a reload brings them back
    page.get_by_text(ready).wait_for()
    wait_idle(page)
    shot(page, "journey-1-data")
    start = page.get_by_role("button", name="Start training")
    box = start.bounding_box()             # the primary action is in view at 1400 x 900, without scrolling
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"], box
    start.click()
    page.get_by_text("Finished:").wait_for(timeout=300_000)
    wait_idle(page)
    no_exceptions(page)
    shot(page, "journey-2-trained")
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


def choose(page, label: str, option: str) -> None:
    box = page.locator('[data-testid="stSelectbox"]', has_text=label)
    box.scroll_into_view_if_needed()
    box.locator("input").click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def box_select(page, fx0=0.15, fy0=0.15, fx1=0.85, fy1=0.85, plot: int = 0) -> None:
    area = page.locator(".js-plotly-plot .nsewdrag").nth(plot).bounding_box()
    x0, y0 = area["x"] + area["width"] * fx0, area["y"] + area["height"] * fy0
    x1, y1 = area["x"] + area["width"] * fx1, area["y"] + area["height"] * fy1
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x0 + (x1 - x0) * i / 20, y0 + (y1 - y0) * i / 20)
        time.sleep(0.02)
    page.mouse.up()
    wait_idle(page)


def ids_of(message: str) -> list[int]:
    """The images an outcome names: 'flagged image 7 unsure' or 'flagged 12 images (3-9, 40) unsure'."""
    many = re.search(r"images \(([^)]*)\)", message)
    return parse_ids(many.group(1)) if many else [int(re.search(r"image (\d+)", message).group(1))]


def heatmap(page) -> tuple[list[str], list[list[int]]]:
    """The heatmap's row labels and counts as drawn (Plotly's decoded copy of the figure's arrays)."""
    return page.eval_on_selector(".js-plotly-plot", "gd => [Array.from(gd._fullData[0].y), "
                                 "Array.from(gd._fullData[0].z, row => Array.from(row))]")


def legend(page) -> str:
    return " | ".join(t or "" for t in page.locator(".js-plotly-plot .legendtext").all_text_contents())


def legend_shows(page, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in legend(page):
        assert time.monotonic() < deadline, f"{text!r} not in the legend: {legend(page)}"
        time.sleep(0.3)


def _journey(page, url, runs, tmp_path):
    run_dir = train(page, url, runs)

    # Clusters: name the biggest cluster, merge two, flag three images
    open_clusters(page, url, run_dir)
    name = page.get_by_role("textbox", name="Name", exact=True)
    name.fill("big one")
    name.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Save name").click()
    edit_done(page, "Edit 1: named cluster")
    named = int(page.get_by_text("Edit 1: named cluster").first.inner_text().split("cluster")[1].split()[0])
    page.get_by_role("tab", name="Merge").click()
    first, second = pick_two(page, "Clusters to merge")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Merge", exact=True).click()
    edit_done(page, "Edit 2: merged clusters")
    into, gone = (int(t.split()[1]) for t in (first, second))
    page.get_by_role("tab", name="Move & flag images").click()
    ids = page.get_by_label("More image ids")
    ids.fill("0, 1, 2")
    ids.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Flag", exact=True).click()
    edit_done(page, "Edit 3: flagged 3 images (0-2) outlier")
    shot(page, "journey-3-clusters-curated")

    # Latent space: the curated clusters first (named, the merged one gone), the model's on request
    page.goto(f"{url}/latent?run={run_dir.name}")
    page.locator(".js-plotly-plot .legendtext").first.wait_for(timeout=180_000)
    wait_idle(page, 180)
    no_exceptions(page)
    assert f"cluster {named} · big one (" in legend(page)
    assert f"cluster {gone} (" not in legend(page)
    shot(page, "journey-4-latent-curated")
    page.get_by_role("radio", name="model's clusters").click()
    wait_idle(page)
    legend_shows(page, f"cluster {gone} (")
    assert "big one" not in legend(page)
    shot(page, "journey-5-latent-model")
    page.get_by_role("radio", name="curated", exact=True).click()
    wait_idle(page)
    legend_shows(page, f"cluster {named} · big one (")

    # ... and a box selection flagged from the page, one edit of the same log
    box_select(page, 0.3, 0.3, 0.7, 0.7)
    page.locator(".icbpl-cell").first.wait_for(timeout=60_000)
    selected = int(page.get_by_text("Selection:").first.inner_text().split(":")[1].split("image")[0].replace(",", ""))
    assert selected > 0
    choose(page, "Flag the", "unsure")
    page.get_by_role("button", name="Flag", exact=True).click()
    edit_done(page, "Edit 4: flagged")
    message = page.get_by_text("Edit 4: flagged").first.inner_text()
    unsure = ids_of(message)
    assert len(unsure) == selected and "unsure" in message
    page.get_by_text("Edit 4: flagged").first.scroll_into_view_if_needed()
    shot(page, "journey-6-latent-flagged")

    # Confusion & metrics: the curated heatmap (named rows, the merged cluster gone); a cell's images
    nav(page, "Confusion & metrics")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    wait_idle(page)
    no_exceptions(page)
    rows, counts = heatmap(page)
    assert any(r.startswith(f"cluster {named} · big one →") for r in rows)
    assert not any(r.startswith(f"cluster {gone} ") for r in rows)
    r, c = max(((i, j) for i in range(len(rows)) for j in range(len(counts[0]))), key=lambda ij: counts[ij[0]][ij[1]])
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.click(area["x"] + area["width"] * (c + 0.5) / len(counts[0]),
                     area["y"] + area["height"] * (r + 0.5) / len(rows))
    wait_idle(page)
    page.locator(".icbpl-cell").first.wait_for()
    cluster = int(rows[r].split()[1])
    heading = page.get_by_text(f"true class {c}:").first.inner_text()
    assert heading.startswith(f"Cluster {cluster}") and heading.endswith(f"{counts[r][c]} images")
    assert page.locator(".icbpl-cell").count() == min(counts[r][c], 60)
    assert all(f"c{cluster}" in t for t in page.locator(".icbpl-cell figcaption").all_inner_texts())
    no_exceptions(page)
    page.get_by_text(f"true class {c}:").first.scroll_into_view_if_needed()
    shot(page, "journey-7-metrics-drill-down")

    # Export: the curated CSV
    nav(page, "Export")
    page.get_by_role("button", name="Download curated CSV").wait_for(timeout=60_000)
    wait_idle(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download curated CSV").click()
    target = tmp_path / "curated.csv"
    info.value.save_as(target)
    shot(page, "journey-8-export")
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 300
    assert list(rows[0])[-4:] == ["curated_cluster", "cluster_name", "flag", "edited"]
    assert not [r for r in rows if int(r["curated_cluster"]) == gone]
    assert {r["curated_cluster"] for r in rows if int(r["cluster"]) in (into, gone)} == {str(into)}
    assert {r["cluster_name"] for r in rows if int(r["curated_cluster"]) == named} == {"big one"}
    assert {r["cluster_name"] for r in rows if int(r["curated_cluster"]) != named} == {""}
    flags = {int(r["index"]): r["flag"] for r in rows}
    assert {i for i, f in flags.items() if f == "unsure"} == set(unsure)
    assert {i for i, f in flags.items() if f == "outlier"} == {0, 1, 2} - set(unsure)
    for r in rows:
        moved = r["curated_cluster"] != r["cluster"]
        assert r["edited"] == str(moved or r["flag"] != ""), r
    state = Curation(Run(run_dir)).state()            # the rows are the log replayed
    assert [int(r["curated_cluster"]) for r in rows] == state.cluster.tolist()

    # Reload: every edit is still there, on every page
    open_clusters(page, url, run_dir)
    page.get_by_role("tab", name="History").click()
    page.get_by_text("4 edit(s), newest first").wait_for()
    for what in ("named cluster", "merged clusters", "flagged 3 images (0-2) outlier", "unsure"):
        page.get_by_text(what).first.wait_for(state="attached")
    page.get_by_role("heading", name="Curate").scroll_into_view_if_needed()
    shot(page, "journey-9-reload-history")
    page.goto(f"{url}/latent?run={run_dir.name}")
    page.locator(".js-plotly-plot .legendtext").first.wait_for(timeout=120_000)
    wait_idle(page)
    assert f"cluster {named} · big one (" in legend(page) and f"cluster {gone} (" not in legend(page)
    page.goto(f"{url}/metrics?run={run_dir.name}")
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    wait_idle(page)
    rows, _ = heatmap(page)
    assert any(r.startswith(f"cluster {named} · big one →") for r in rows)
    no_exceptions(page)
    shot(page, "journey-10-reload-metrics")

    # Retrain from the corrections: a new run guided by them, watched on the Train page
    expected = from_curation(Run(run_dir))
    open_clusters(page, url, run_dir)
    page.get_by_role("tab", name="Retrain from corrections").click()
    page.get_by_text(f"guided by the {len(expected.ids):,} images you decided").wait_for()
    page.get_by_role("button", name="Retrain from these corrections").click()
    page.get_by_text(f"Guided by {len(expected.ids):,} images a person decided in run {run_dir.name}").wait_for()
    page.get_by_text("Finished: ACC").wait_for(timeout=300_000)
    shot(page, "journey-11-retrained")
    retrained = Run(runs / page.url.split("run=")[1].split("&")[0])
    assert retrained.config["train"]["n_clusters"] == expected.n_clusters < 10      # the merge took one away
    assert retrained.metrics["n_samples"] == 300 and retrained.state == "finished"


# -- two runs compared -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A server over two finished digits runs of the same images (seeds 0 and 1)."""
    runs = tmp_path_factory.mktemp("compare-runs")
    procs = [start_icbpl("train", "--dataset", "digits", "--limit", "300", "--backbone", "scratch-mlp",
                         "--neighbours-from", "pixels", "--epochs", "3", "--seed", seed, "--runs-dir", runs, "--quiet")
             for seed in (0, 1)]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        done.append(run_folder(out))
    with streamlit_app(runs, tmp_path_factory.getbasetemp() / "streamlit-compare.log") as url:
        yield url, done


def same(source, target, indices) -> set[int]:
    """The images of run `target` that are `indices` of run `source`, by id (the seeded subsets of two
    seeds share only some images)."""
    import pandas as pd

    a, b = pd.read_csv(source / "assignments.csv"), pd.read_csv(target / "assignments.csv")
    ids = set(a.loc[a["index"].isin(list(indices)), "id"].astype(str))
    return set(b.loc[b["id"].astype(str).isin(ids), "index"].astype(int))


def selected_in(page, plot: int) -> set[int]:
    """The image indices drawn selected in a latent plot (its traces' selectedpoints)."""
    return set(page.evaluate("""n => { const gd = document.querySelectorAll('.js-plotly-plot')[n]; const out = [];
        gd._fullData.forEach(t => { const sp = gd.data[t.index].selectedpoints;
            if (t.type === 'scattergl' && sp) Array.from(sp).forEach(p => out.push(Math.round(t.customdata[p][0]))); });
        return out; }""", plot))


def colours_of(page, plot: int) -> dict[str, str]:
    """Legend name -> marker colour of a latent plot's image traces."""
    return page.evaluate("""n => { const gd = document.querySelectorAll('.js-plotly-plot')[n]; const out = {};
        gd._fullData.forEach(t => { if (t.type === 'scattergl') out[t.name] = t.marker.color; });
        return out; }""", plot)


def test_two_runs_compared_share_colours_and_selections(two_runs):
    url, (first, second) = two_runs
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{url}/latent?run={first.name}")
            page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
            wait_idle(page, 180)
            page.locator('[data-testid="stSelectbox"]', has_text="Compare with").click()
            page.get_by_role("option", name=second.name, exact=False).first.click()
            wait_idle(page, 180)
            page.locator(".js-plotly-plot").nth(1).wait_for(timeout=180_000)
            wait_idle(page, 180)
            no_exceptions(page)
            mine, theirs = colours_of(page, 0), colours_of(page, 1)
            matched = {name: colour for name, colour in theirs.items() if " · ≈ " in name}
            assert matched
            for name, colour in matched.items():       # "cluster 5 · ≈ 3 (40)": drawn as the first run's 3
                twin = int(name.split(" · ≈ ")[1].split()[0])
                assert colour == next(c for n, c in mine.items() if n.startswith(f"cluster {twin} ("))
            shot(page, "compare-1-matched-colours")

            box_select(page, 0.2, 0.2, 0.8, 0.8, plot=0)     # the first run's selection, shown in both
            page.locator(".icbpl-cell").first.wait_for(timeout=60_000)
            wait_idle(page)
            picked = selected_in(page, 0)
            count = int(page.get_by_text("Selection:").first.inner_text().split(":")[1].split("image")[0])
            assert len(picked) == count > 0
            shown = selected_in(page, 1)
            assert shown and shown == same(first, second, picked)     # the same images (by id) in the other run
            shot(page, "compare-2-selected-on-the-left")

            box_select(page, 0.2, 0.2, 0.8, 0.8, plot=1)     # the second run's selection becomes the first's
            wait_idle(page)
            time.sleep(1)
            right = selected_in(page, 1)
            left = selected_in(page, 0)
            count = int(page.get_by_text("Selection:").first.inner_text().split(":")[1].split("image")[0])
            assert right and left == same(second, first, right) and len(left) == count
            no_exceptions(page)
            shot(page, "compare-3-selected-on-the-right")
        except Exception:
            shot(page, "compare-failure")
            raise
        finally:
            browser.close()
