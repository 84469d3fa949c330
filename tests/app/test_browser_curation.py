"""Curation in a real browser: on a finished digits run, name a cluster, merge two, flag three
images, see the history, download the curated CSV, reload and find the edits still there.
Screenshots go to tests/artifacts/curate-*.png."""
import csv
import time

import pytest

from tests.app.browser_server import streamlit_app
from tests.app.test_browser import CHROMIUM, no_exceptions, shot, wait_idle
from tests.helpers import icbpl, run_folder

pytestmark = pytest.mark.slow
from playwright import sync_api  # noqa: E402  (test_browser skips the module without chromium)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("curate-runs")
    run_dir = run_folder(icbpl("train", "--dataset", "digits", "--limit", "300", "--backbone", "scratch-mlp",
                               "--neighbours-from", "pixels", "--epochs", "2", "--runs-dir", runs, "--quiet"))
    with streamlit_app(runs, tmp_path_factory.getbasetemp() / "streamlit-curate.log") as url:
        yield url, run_dir


def test_name_merge_flag_export_and_reload_in_a_browser(server, tmp_path):
    url, run_dir = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        page.set_default_timeout(60_000)
        try:
            _journey(page, url, run_dir, tmp_path)
        except Exception:
            shot(page, "curate-failure")
            raise
        finally:
            browser.close()


def open_clusters(page, url, run_dir) -> None:
    page.goto(f"{url}/clusters?run={run_dir.name}")
    page.get_by_role("heading", name="Curate").wait_for(timeout=120_000)
    wait_idle(page)
    no_exceptions(page)
    page.get_by_role("heading", name="Curate").scroll_into_view_if_needed()


def pick_two(page, label: str) -> tuple[str, str]:
    """Choose the first two options of a multiselect; returns their texts."""
    chosen = []
    for _ in range(2):
        box = page.locator('[data-testid="stMultiSelect"]', has_text=label)
        options = page.locator('[role="option"]:visible', has_text="cluster ")
        for _ in range(5):                  # the list can close again while the page reruns
            if options.count():
                break
            box.get_by_role("button", name="Open").click()
            time.sleep(1)
        option = options.first
        chosen.append(option.inner_text())
        option.click()
        wait_idle(page)
    return chosen[0], chosen[1]


def edit_done(page, text: str) -> None:
    wait_idle(page)
    page.get_by_text(text).first.wait_for()
    no_exceptions(page)


def _journey(page, url, run_dir, tmp_path):
    open_clusters(page, url, run_dir)
    shot(page, "curate-1-clusters")

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
    page.get_by_text("3 image(s) selected").wait_for()
    page.get_by_role("button", name="Flag", exact=True).click()
    edit_done(page, "Edit 3: flagged 3 images (0-2) outlier")
    page.get_by_role("tab", name="History").click()
    wait_idle(page)
    page.get_by_role("heading", name="Curate").scroll_into_view_if_needed()
    shot(page, "curate-2-history")

    page.goto(f"{url}/export?run={run_dir.name}")
    page.get_by_role("button", name="Download curated CSV").wait_for(timeout=60_000)
    wait_idle(page)
    no_exceptions(page)
    shot(page, "curate-3-export")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download curated CSV").click()
    target = tmp_path / "curated.csv"
    info.value.save_as(target)
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 300
    assert list(rows[0])[-4:] == ["curated_cluster", "cluster_name", "flag", "edited"]
    assert [r["flag"] for r in rows[:4]] == ["outlier", "outlier", "outlier", ""]
    assert not [r for r in rows if int(r["curated_cluster"]) == gone]
    assert {r["curated_cluster"] for r in rows if int(r["cluster"]) in (into, gone)} == {str(into)}
    assert {r["cluster_name"] for r in rows if int(r["curated_cluster"]) == named} == {"big one"}

    open_clusters(page, url, run_dir)          # a fresh page: the edits come from the run's log
    page.get_by_role("tab", name="History").click()
    page.get_by_text("flagged 3 images (0-2) outlier").first.wait_for(state="attached")   # a data grid cell
    page.get_by_text("3 edit(s), newest first").wait_for()
    assert page.get_by_text("big one").count() > 0
    shot(page, "curate-4-after-reload")
