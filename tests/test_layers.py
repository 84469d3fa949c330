"""The layers stay apart: the engine imports no user-interface library, the app's services no
Streamlit, and nothing edits sys.path or PYTHONPATH to find the project."""
import subprocess
import sys

from tests.helpers import ROOT

UI = ("streamlit", "plotly", "umap")


def _imported_after(packages: tuple[str, ...]) -> set[str]:
    """Top-level modules in sys.modules after importing every module of `packages` in a fresh process."""
    code = f"""
import importlib, pkgutil, sys
for package in {packages!r}:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    return set(out.stdout.split())


def test_the_engine_imports_no_user_interface_library():
    assert not _imported_after(("icbpl_core",)) & set(UI)


def test_the_app_services_import_no_streamlit():
    assert "streamlit" not in _imported_after(("icbpl_app",))


def test_no_code_edits_sys_path_or_pythonpath():
    offenders = []
    for path in [*ROOT.glob("*.py"), *ROOT.glob("icbpl_*/**/*.py"), *ROOT.glob("pages/*.py"),
                 *ROOT.glob("bench/*.py"), *ROOT.glob("tests/**/*.py")]:
        if path.name == "test_layers.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "sys.path.insert" in text or "sys.path.append" in text or '"PYTHONPATH"' in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
