"""The app listens on this machine only, unless serving on a network is asked for; with a token,
every browser session must give it first."""
from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from tests.helpers import APP, ROOT


@pytest.fixture
def address():
    before = config.get_option("server.address")
    yield lambda value: config.set_option("server.address", value)
    config.set_option("server.address", before)


def test_the_project_config_listens_on_localhost():
    text = (ROOT / ".streamlit" / "config.toml").read_text()
    assert 'address = "localhost"' in text


@pytest.mark.parametrize("where", ["0.0.0.0", "", "192.168.1.5"])
def test_a_network_address_is_refused_unless_asked_for(address, where, tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("ICBPL_ALLOW_NETWORK", raising=False)
    address(where)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert any("other machines can reach it" in e.value and "ICBPL_ALLOW_NETWORK" in e.value for e in at.error)
    assert not at.get("number_input") and not at.sidebar.selectbox        # nothing of the app is shown
    monkeypatch.setenv("ICBPL_ALLOW_NETWORK", "1")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.error and at.selectbox(key="d_dataset").value == "digits"


def test_with_a_token_each_session_must_give_it(address, tmp_path, monkeypatch):
    monkeypatch.setenv("ICBPL_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("ICBPL_ACCESS_TOKEN", "s3cret-token")
    address("localhost")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.get("number_input")                                      # only the sign-in form
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert any("not the token" in e.value for e in at.error) and not at.get("number_input")
    at.text_input[0].input("s3cret-token")
    at.button[0].click().run()
    assert at.selectbox(key="d_dataset").value == "digits" and not at.exception


def test_the_readme_says_how_to_serve_on_a_network():
    readme = (Path(ROOT) / "README.md").read_text()
    assert "ICBPL_ALLOW_NETWORK" in readme and "ICBPL_ACCESS_TOKEN" in readme and "TLS" in readme
