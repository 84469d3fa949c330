"""`icbpl curate` and `icbpl export --curated` as a user drives them, on a real digits run."""
import csv

import pytest

from icbpl_core.store.runs import Run
from tests.helpers import icbpl, run_folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return run_folder(icbpl("train", "--dataset", "digits", "--limit", "300", "--epochs", "2",
                            "--neighbours-from", "pixels", "--runs-dir", runs, "--quiet"))


def clusters(run_dir) -> dict[int, tuple[int, str]]:
    """The listing: cluster -> (size, name)."""
    out = {}
    for line in icbpl("curate", run_dir).stdout.splitlines()[1:]:
        parts = line.split(None, 4)
        out[int(parts[0])] = (int(parts[1]), parts[4] if len(parts) > 4 else "")
    return out


def test_curate_edits_lists_undoes_and_exports(run_dir, tmp_path):
    raw_before = tmp_path / "raw-before.csv"
    icbpl("export", run_dir, "--out", raw_before)
    start = clusters(run_dir)
    a, b = sorted(start, key=lambda c: -start[c][0])[:2]        # the two biggest clusters

    assert "edit 1: named cluster" in icbpl("curate", run_dir, "--name", a, "big one").stderr
    icbpl("curate", run_dir, "--merge", a, b)
    merged = clusters(run_dir)
    assert merged[a] == (start[a][0] + start[b][0], "big one") and merged[b][0] == 0

    preview = icbpl("curate", run_dir, "--split", a, 2, "--preview")
    sizes = [int(line.split()[2]) for line in preview.stdout.splitlines()]
    assert sum(sizes) == merged[a][0] and "unchanged" in preview.stderr
    assert clusters(run_dir) == merged                            # a preview changes nothing
    icbpl("curate", run_dir, "--split", a, 2)
    new = max(clusters(run_dir))
    assert new == max(start) + 1 and clusters(run_dir)[new][0] == sizes[1]

    ids = tmp_path / "ids.txt"
    ids.write_text("# to check\n0 1\n2,3\n")
    icbpl("curate", run_dir, "--move", f"@{ids}", "--to", b)
    icbpl("curate", run_dir, "--flag", "5-7", "outlier")
    icbpl("curate", run_dir, "--flag", "6", "none")
    assert "undo of edit 6" in icbpl("curate", run_dir, "--undo").stderr
    assert "redo of edit 6" in icbpl("curate", run_dir, "--redo").stderr
    history = icbpl("curate", run_dir, "--history").stdout
    assert "moved 4 images (0-3) to cluster" in history and "flagged 3 images (5-7) outlier" in history

    out = tmp_path / "curated.csv"
    icbpl("export", run_dir, "--curated", "--out", out)
    rows = list(csv.DictReader(out.open()))
    raw = list(csv.DictReader(raw_before.open()))
    assert list(rows[0])[-4:] == ["curated_cluster", "cluster_name", "flag", "edited"]
    assert all({k: r[k] for k in raw[0]} == old for r, old in zip(rows, raw))    # raw columns unchanged
    assert [int(r["curated_cluster"]) for r in rows[:4]] == [b] * 4
    assert [r["flag"] for r in rows[5:8]] == ["outlier", "", "outlier"]
    assert all(r["edited"] == "True" for r in rows[:4])
    assert {r["cluster_name"] for r in rows if int(r["curated_cluster"]) == a} == {"big one"}
    raw_after = tmp_path / "raw-after.csv"
    icbpl("export", run_dir, "--out", raw_after)
    assert raw_after.read_bytes() == raw_before.read_bytes()    # the plain export is the model's


@pytest.mark.parametrize("args, fragment", [
    (["--move", "1", "--to", "99"], "no cluster 99 in this run (its clusters are 0-"),
    (["--move", "1,x", "--to", "0"], "'x' is not an image id"),
    (["--flag", "300", "outlier"], "no image 300 in this run (its images are 0 to 299)"),
    (["--flag", "1", "odd"], "unknown flag 'odd'"),
    (["--move", "1"], "--move needs --to CLUSTER"),
    (["--merge", "2"], "at least two different clusters"),
    (["--split", "0", "1000"], "it can be split into 2 to"),
    (["--name", "one", "x"], "a cluster is a whole number, got 'one'"),
    (["--flag", "@/nonexistent/ids.txt", "unsure"], "cannot read the ids file"),
])
def test_bad_ids_and_clusters_exit_2_with_one_line(run_dir, args, fragment):
    done = icbpl("curate", run_dir, *args, check=False)
    assert done.returncode == 2 and fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_run_in_training_cannot_be_curated(run_dir):
    run = Run(run_dir)
    run.set_status("running")          # this test's process: a live trainer as far as the run can tell
    try:
        done = icbpl("curate", run_dir, "--name", "0", "x", check=False)
    finally:
        run.set_status("finished")
    assert done.returncode == 1 and "is being trained" in done.stderr and "when training ends" in done.stderr
