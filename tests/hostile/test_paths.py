"""A browser opens folders only under the data roots the person who started the app allowed."""
import pytest
from streamlit.testing.v1 import AppTest

from icbpl_app import uploads
from tests.helpers import APP, write_digit_pngs


@pytest.fixture
def roots(tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    write_digit_pngs(allowed / "pngs", 12)
    monkeypatch.setenv("ICBPL_DATA_ROOTS", str(allowed))
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    return allowed


def _open_folder(path: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.radio(key="d_source").set_value("folder").run()
    at.text_input(key="d_folder").input(path).run()
    return at


@pytest.mark.parametrize("path", ["/", "/etc", "{tmp}/allowed/../outside", "{tmp}/allowed/link-out"])
def test_folders_outside_the_roots_are_refused_by_name(roots, tmp_path, path):
    (tmp_path / "outside").mkdir()
    write_digit_pngs(tmp_path / "outside", 4)
    (roots / "link-out").symlink_to(tmp_path / "outside")          # a link inside that leads outside
    at = _open_folder(path.format(tmp=tmp_path))
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("outside the folders this app may open" in w and "ICBPL_DATA_ROOTS" in w for w in warnings)
    assert not [m for m in at.metric if m.label == "Images"]           # nothing of it was listed
    assert at.button(key="d_start_disabled").disabled


def test_a_folder_under_the_roots_opens(roots):
    at = _open_folder(str(roots / "pngs"))
    assert not at.exception and [m.value for m in at.metric if m.label == "Images"] == ["12"]


def test_each_session_may_open_only_its_own_uploads(tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("ICBPL_DATA_ROOTS", str(tmp_path / "data"))
    mine, theirs = uploads.session_folder("me"), uploads.session_folder("them")
    assert uploads.refusal(str(mine), "me") is None
    assert "outside the folders" in uploads.refusal(str(theirs), "me")
    assert "outside the folders" in uploads.refusal(str(uploads.session_folder("me").parent), "me")
