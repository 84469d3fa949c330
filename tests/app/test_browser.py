"""The app in a real browser: `streamlit run app.py` driven by Playwright and Debian's Chromium.

Start a small training on digits from the page, wait for it to finish (the sidebar saying what
the page says), open the latent space, hover a point (its image shows), lasso points ending over
one (the image goes away), box-select points with the mouse, see the gallery, change the
colouring (the selection stays), click a neighbours button (the page scrolls to them), click a
cell of the contingency table (its images show), download the selection's CSV and check its
rows. Nothing is fetched from the internet. Screenshots go to tests/artifacts/.
"""
import csv
import time

import pytest

from tests.app.browser_server import app_over_new_runs
from tests.conftest import MISSING
from tests.helpers import ROOT, chromium

CHROMIUM = chromium()
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = pytest.mark.slow
if CHROMIUM is None:
    pytest.skip(f"{MISSING} chromium (browser test); install: sudo apt-get install chromium",
                allow_module_level=True)
from playwright import sync_api  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with app_over_new_runs(tmp_path_factory, "browser") as served:
        yield served


def wait_idle(page, timeout=120.0) -> None:
    """Until Streamlit's 'running' indicator has been gone for a moment."""
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        busy = page.locator('[data-testid="stStatusWidget"]').count() > 0
        calm = 0 if busy else calm + 1
        if calm >= 6:
            return
        time.sleep(0.25)
    raise AssertionError("the app kept running")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()


def no_exceptions(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:3000]


def test_train_select_and_download_in_a_browser(server, tmp_path):
    url, runs = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1500, "height": 1700}, accept_downloads=True)
        page.set_default_timeout(60_000)
        outside = []
        page.on("request", lambda r: outside.append(r.url) if r.url.startswith(("http:", "https:"))
                and not r.url.startswith(url) else None)
        try:
            _journey(page, url, runs, tmp_path)
            assert outside == [], f"fetched from outside the app: {outside}"      # the favicon included
        except Exception:
            shot(page, "failure")
            raise
        finally:
            browser.close()


def _journey(page, url, runs, tmp_path):
    # 1. Data & model: the defaults (digits) with a small, quick setting
    page.goto(url)
    page.get_by_text("Ready: digits").wait_for()
    wait_idle(page)
    no_exceptions(page)
    shot(page, "1-data-model")
    set_number(page, "Use at most this many images (0 = all)", 300)
    set_number(page, "Epochs", 3)
    page.locator('[data-testid="stSelectbox"]', has_text="Backbone").click()
    page.keyboard.type("scratch-mlp")
    page.get_by_role("option", name="scratch-mlp (offline)", exact=True).click()
    wait_idle(page)
    page.get_by_text("Ready: digits (300 images), recipe dataset, backbone scratch-mlp, K = 10, 3 epochs").wait_for()
    page.get_by_role("button", name="Start training").click()

    # 2. Train: live progress, then finished
    page.get_by_text("losses per term").or_(page.get_by_text("Finished:")).first.wait_for(timeout=120_000)
    shot(page, "2-train-running")
    # the sidebar's run picker says the state the page says (both follow the run as it changes)
    sidebar = page.locator('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]').last
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shown = page.locator('[data-testid="stCaptionContainer"]', has_text="state").first.inner_text()
        if shown.rsplit("state", 1)[1].strip() == sidebar.inner_text().rsplit("·", 1)[1].strip():
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the page says {shown!r}, the sidebar {sidebar.inner_text()!r}")
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    # a reload (or a second tab on the same URL) reattaches to the running job
    assert f"run={run_dir.name}" in page.url
    page.reload()
    page.get_by_role("heading", name=run_dir.name).wait_for(timeout=60_000)
    page.get_by_text("Finished:").wait_for(timeout=240_000)
    wait_idle(page)
    no_exceptions(page)
    shot(page, "3-train-finished")
    assert (run_dir / "train.log").is_file()
    assert len([p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1   # one job

    # 3. Latent space: WebGL scatter with PEDCC stars
    nav(page, "Latent space")
    page.locator(".js-plotly-plot").first.wait_for(timeout=180_000)
    wait_idle(page, 180)
    page.locator(".js-plotly-plot .gl-container canvas, .js-plotly-plot canvas").first.wait_for()
    no_exceptions(page)
    shot(page, "4-latent")

    plot = page.locator(".js-plotly-plot .nsewdrag").first
    box = plot.bounding_box()
    assert box and box["width"] > 200

    # hover: some point under the mouse shows its image
    shown = False
    for fy in (0.5, 0.4, 0.6, 0.3, 0.7):
        for fx in [i / 40 for i in range(4, 37)]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            time.sleep(0.05)
            thumb = page.locator("#icbpl-hover-thumb")
            if thumb.count() and thumb.is_visible():
                shown = True
                break
        if shown:
            break
    assert shown, "no hover image appeared"
    assert "url(" in page.eval_on_selector("#icbpl-hover-thumb div", "el => el.style.backgroundImage")
    shot(page, "5-latent-hover")

    # a lasso that ends over a point: its picture goes, and does not follow the mouse elsewhere
    end = (box["x"] + fx * box["width"], box["y"] + fy * box["height"])      # the point just hovered
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 8)
    page.locator('.modebar-btn[data-val="lasso"]').first.click()
    path = [(end[0] - 60, end[1] - 60), (end[0] + 60, end[1] - 60), (end[0] + 60, end[1] + 60), end]
    page.mouse.move(*path[0])
    page.mouse.down()
    for (ax, ay), (bx, by) in zip(path, path[1:]):
        for i in range(1, 11):
            page.mouse.move(ax + (bx - ax) * i / 10, ay + (by - ay) * i / 10)
            time.sleep(0.02)
    page.mouse.up()
    wait_idle(page)
    assert not page.locator("#icbpl-hover-thumb").is_visible()
    page.mouse.move(20, box["y"] + box["height"] + 100)          # off the plot
    time.sleep(0.3)
    assert not page.locator("#icbpl-hover-thumb").is_visible()
    shot(page, "5b-after-lasso")
    page.locator('.modebar-btn[data-val="select"]').first.click()

    # box select: drag across the middle of the plot
    x0, y0 = box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.15
    x1, y1 = box["x"] + box["width"] * 0.85, box["y"] + box["height"] * 0.85
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x0 + (x1 - x0) * i / 20, y0 + (y1 - y0) * i / 20)
        time.sleep(0.02)
    page.mouse.up()
    page.locator(".icbpl-cell").first.wait_for(timeout=60_000)
    wait_idle(page)
    no_exceptions(page)
    heading = page.get_by_text("Selection:").first.inner_text()
    selected = int(heading.split(":")[1].split("image")[0].replace(",", "").strip())
    assert 0 < selected <= 300
    assert page.locator(".icbpl-cell").count() == min(selected, 60)
    assert page.locator(".icbpl-cell figcaption").first.inner_text().count("digits:") == 1     # its file (id)
    shot(page, "6-latent-selection")
    # another colouring is another figure: the selection stays
    page.get_by_text("confidence", exact=True).first.click()
    wait_idle(page)
    assert page.get_by_text("Selection:").first.inner_text() == heading
    page.get_by_text("cluster", exact=True).first.click()
    wait_idle(page)

    # 4. the other result pages render
    for name, shot_name in (("Clusters & neighbours", "7-clusters"), ("Confusion & metrics", "8-metrics")):
        nav(page, name)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        wait_idle(page)
        no_exceptions(page)
        shot(page, shot_name)
        if name.startswith("Clusters"):      # click an image: the page scrolls to its neighbours
            page.locator('[class*="st-key-most-"] button:visible').last.click()
            wait_idle(page)
            time.sleep(0.5)
            # the neighbours at the top of the window, or the page scrolled as far as it goes
            top, at_end = page.eval_on_selector("#icbpl-anchor-neighbours", """el => {
                let s = el.parentElement; while (s && s.scrollHeight <= s.clientHeight + 1) s = s.parentElement;
                s = s || document.scrollingElement;
                return [el.getBoundingClientRect().top, s.scrollTop + s.clientHeight >= s.scrollHeight - 2]; }""")
            assert 0 <= top < 200 or (at_end and 0 <= top < 1700), (top, at_end)
            no_exceptions(page)
            shot(page, "7b-neighbours")
        else:                                # click a cell of the contingency table: its images
            area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
            for i in range(10):              # down the diagonal (10 clusters, 10 classes) to a cell with images
                page.mouse.click(area["x"] + area["width"] * (i + 0.5) / 10,
                                 area["y"] + area["height"] * (i + 0.5) / 10)
                wait_idle(page)
                if page.locator(".icbpl-cell").count():
                    break
            assert page.get_by_text(f"true class {i}").count() == 1
            assert page.locator(".icbpl-cell").count() > 0
            no_exceptions(page)
            shot(page, "8b-metrics-cell")

    # 5. Export: the selection's rows as CSV
    nav(page, "Export")
    page.get_by_text("current selection").first.click()
    wait_idle(page)
    shot(page, "9-export")
    with page.expect_download() as info:
        page.get_by_role("button", name=f"Download {selected:,} rows as CSV").click()
    target = tmp_path / "selection.csv"
    info.value.save_as(target)
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == selected
    assert list(rows[0])[:7] == ["index", "path", "cluster", "confidence", "margin", "label", "matched_class"]
    assert len({r["index"] for r in rows}) == selected
    assert all(0 <= int(r["index"]) < 300 for r in rows)
