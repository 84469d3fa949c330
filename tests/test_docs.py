"""Code comments cite the docs by section anchor: every cited section exists."""
import re

from tests.helpers import ROOT


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.M):
        out.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return out


def test_every_cited_doc_section_exists():
    cited = []
    for path in [*ROOT.glob("icbpl_*/**/*.py"), *ROOT.glob("pages/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]:
        for doc, anchor in re.findall(r"(?:docs/)?(BENCHMARKS|METHOD)\.md#([a-z0-9-]+)", path.read_text(encoding="utf-8")):
            cited.append((path.name, doc, anchor))
    assert cited
    anchors = {doc: _anchors((ROOT / "docs" / f"{doc}.md").read_text(encoding="utf-8")) for doc in ("BENCHMARKS", "METHOD")}
    missing = [c for c in cited if c[2] not in anchors[c[1]]]
    assert missing == []
