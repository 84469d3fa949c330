"""`icbpl export` writes only where it should: never inside a run folder, never over a file
unless told, never through a link or onto a folder; every refusal is one line."""
import os

import pytest

from tests.helpers import icbpl


@pytest.fixture(scope="module")
def finished(hostile_run):
    return hostile_run[1]


def _refused(*args, fragment: str):
    proc = icbpl("export", *args, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    return proc


def test_never_inside_a_run_folder(finished):
    before = (finished / "config.json").read_bytes()
    _refused(finished, "--out", finished / "config.json", "--force", fragment="inside the run folder")
    _refused(finished, "--out", finished / "sub" / "x.csv", fragment="inside the run folder")
    assert (finished / "config.json").read_bytes() == before          # the run can still resume


def test_an_existing_file_only_with_force(finished, tmp_path):
    out = tmp_path / "labels.csv"
    out.write_text("mine")
    _refused(finished, "--out", out, fragment="exists; choose another name, or overwrite it on purpose with --force")
    assert out.read_text() == "mine"
    icbpl("export", finished, "--out", out, "--force")
    assert out.read_text().startswith("index,path,")


def test_links_folders_and_unwritable_targets(finished, tmp_path, monkeypatch):
    target = tmp_path / "precious.txt"
    target.write_text("keep")
    (tmp_path / "link.csv").symlink_to(target)
    _refused(finished, "--out", tmp_path / "link.csv", "--force", fragment="is a link")
    assert target.read_text() == "keep" and (tmp_path / "link.csv").is_symlink()
    _refused(finished, "--out", tmp_path, fragment="is a folder")
    _refused(finished, "--out", tmp_path / "no" / "such" / "x.csv", fragment="is not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    if os.access(locked, os.W_OK):          # root writes anywhere: the refusal is tested in-process
        from icbpl_core.store import atomic, export
        from icbpl_core.store.runs import open_run

        monkeypatch.setattr(atomic.tempfile, "mkstemp", lambda **kw: (_ for _ in ()).throw(
            PermissionError(13, "Permission denied")))
        with pytest.raises(export.ExportError, match="cannot write .*Permission denied"):
            export.export_csv(open_run(finished), locked / "x.csv")
    else:
        _refused(finished, "--out", locked / "x.csv", fragment="Permission denied")
