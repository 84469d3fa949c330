"""The curation log: every edit, undo and redo, replay, concurrent writers, and runs in training."""
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from icbpl_core.errors import RunError
from icbpl_core.store import atomic
from icbpl_core.store.curation import LOG_NAME, Curation, CurationError, describe
from icbpl_core.store.locks import file_lock
from icbpl_core.store.runs import LOCK_NAME, create_run


def finished_run(tmp_path, n=60, k=3):
    """A finished run: 3 clusters of 20 images; cluster 0's latents form two tight groups."""
    run = create_run(tmp_path / "runs", {"dataset": "digits", "backbone": "scratch", "train": {"n_clusters": k}})
    clusters = np.repeat(np.arange(k), n // k)
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(n, 4)) * 0.01
    latents[np.arange(n) % 2 == 0, 0] += 1.0           # two groups in every cluster, by parity
    latents[:, 1] += clusters
    atomic.save_npy(run.file("latents.npy"), latents.astype(np.float32))
    table = pd.DataFrame({"index": np.arange(n), "id": [f"img{i}" for i in range(n)], "cluster": clusters,
                          "confidence": 0.9, "margin": 0.1})
    atomic.write_text(run.file("assignments.csv"), table.to_csv(index=False))
    run.set_status("finished")
    return run


def test_a_run_without_edits_is_its_model_assignment(tmp_path):
    run = finished_run(tmp_path)
    s = Curation(run).state()
    assert (s.cluster == s.raw).all() and not s.edited.any() and s.names == {} and s.clusters() == [0, 1, 2]
    assert not run.file(LOG_NAME).exists()


def test_name_merge_move_flag_replay_and_never_touch_the_assignments(tmp_path):
    run = finished_run(tmp_path)
    before = run.file("assignments.csv").read_bytes()
    c = Curation(run)
    c.name(0, "zeros")
    c.merge([0, 2])
    c.move([3, 25], 1)
    c.flag([4], "outlier")
    c.flag([5, 6], "verified")
    s = Curation(run).state()                       # a fresh reader replays the same
    assert s.names == {0: "zeros"}
    assert s.size(0) == 39 and s.size(2) == 0 and s.size(1) == 21
    assert s.cluster[3] == 1 and s.cluster[25] == 1 and s.cluster[45] == 0
    assert list(s.flag[4:7]) == ["outlier", "verified", "verified"]
    assert s.edited.sum() == 20 + 1 + 3            # 40..59 merged, 3 moved (25 was in 1), 4-6 flagged
    c.flag([4], "none")
    assert Curation(run).state().flag[4] == ""
    assert run.file("assignments.csv").read_bytes() == before
    assert [e["seq"] for e in c.entries()] == list(range(7))


def test_undo_and_redo_are_entries_and_a_new_edit_ends_redo(tmp_path):
    c = Curation(finished_run(tmp_path))
    c.move([0], 2)
    c.name(1, "ones")
    assert c.undo()["target"] == 2
    assert c.state().names == {} and c.state().cluster[0] == 2
    assert c.undo()["target"] == 1
    assert c.state().cluster[0] == 0
    with pytest.raises(CurationError, match="nothing to undo"):
        c.undo()
    assert c.redo()["target"] == 1
    assert c.state().cluster[0] == 2
    c.flag([1], "unsure")                           # a new edit: the undone name cannot come back
    with pytest.raises(CurationError, match="nothing to redo"):
        c.redo()
    ops = [e["op"] for e in c.entries()]
    assert ops == ["base", "move", "name", "undo", "undo", "redo", "flag"]
    history = c.state().history
    assert [h["in_effect"] for h in history if h["op"] in ("move", "name", "flag")] == [True, False, True]
    assert [describe(h) for h in history][:3] == ["moved image 0 to cluster 2", "named cluster 1 'ones'",
                                                   "undo of edit 2"]


def test_split_previews_k_means_on_the_latents_and_applies_what_was_shown(tmp_path):
    c = Curation(finished_run(tmp_path))
    preview = c.preview_split(0, 2)
    assert preview.into == [0, 3] and preview.sizes == [10, 10]
    assert {tuple(sorted(p % 2)) for p in map(np.asarray, preview.parts)} == {(0,) * 10, (1,) * 10}
    assert not c.entries()                          # a preview writes nothing
    entry = c.split(0, 2, preview)
    assert entry["into"] == [0, 3]
    s = c.state()
    assert s.clusters() == [0, 1, 2, 3] and s.size(0) == 10 and s.size(3) == 10
    c.move([59], 3)                                 # the new cluster is a cluster like the others
    c.undo()
    c.undo()
    assert c.state().clusters() == [0, 1, 2]
    assert c.split(1, 2)["into"] == [1, 4]          # ids an undone split made are not reused
    with pytest.raises(CurationError, match="2 to 10 parts"):
        c.preview_split(1, 11)


def test_bad_clusters_and_images_are_refused_with_what_exists(tmp_path):
    c = Curation(finished_run(tmp_path))
    with pytest.raises(CurationError, match=r"no cluster 7 in this run \(its clusters are 0-2\)"):
        c.move([1], 7)
    with pytest.raises(CurationError, match=r"no image 60 in this run \(its images are 0 to 59\)"):
        c.flag([60], "outlier")
    with pytest.raises(CurationError, match="unknown flag 'odd'"):
        c.flag([1], "odd")
    with pytest.raises(CurationError, match="two different clusters"):
        c.merge([1, 1])
    assert c.entries() == []


def test_a_run_in_training_cannot_be_curated(tmp_path):
    run = finished_run(tmp_path)
    with file_lock(run.file(LOCK_NAME), timeout=0), \
            pytest.raises(RunError, match="being trained .* when training ends"):
        Curation(run).name(0, "x")
    run.set_status("running")
    with pytest.raises(RunError, match="being trained"):
        Curation(run).name(0, "x")
    assert not run.file(LOG_NAME).exists()


def test_a_log_made_on_other_assignments_is_refused(tmp_path):
    run = finished_run(tmp_path)
    Curation(run).move([0], 1)
    table = run.assignments()
    table["cluster"] = table["cluster"][::-1].to_numpy()     # the run was trained again
    atomic.write_text(run.file("assignments.csv"), table.to_csv(index=False))
    with pytest.raises(RunError, match="trained again"):
        Curation(run).state()


def test_a_line_cut_short_by_a_crash_loses_no_later_edit(tmp_path):
    run = finished_run(tmp_path)
    c = Curation(run)
    c.move([0], 1)
    with open(run.file(LOG_NAME), "a") as f:
        f.write('{"op": "move", "ids": [1')                  # a crash mid-write
    c.move([2], 1)
    assert list(np.flatnonzero(c.state().cluster == 1)[:3]) == [0, 2, 20]


def _flag_many(path, start, n):
    from icbpl_core.store.runs import Run
    c = Curation(Run(path))
    for i in range(start, start + n):
        c.flag([i], "verified")


def test_two_processes_and_two_threads_writing_at_once_lose_no_edit(tmp_path):
    run = finished_run(tmp_path)
    # fresh interpreters, not multiprocessing: in a suite that ran the app's pages in this process,
    # a spawned child would re-run whatever __main__ became
    code = ("import sys\nfrom icbpl_core.store.curation import Curation\nfrom icbpl_core.store.runs import Run\n"
            "c = Curation(Run(sys.argv[1]))\nfor i in range(int(sys.argv[2]), int(sys.argv[2]) + 12):\n"
            "    c.flag([i], 'verified')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(run.path), str(s)]) for s in (0, 12)]
    threads = [threading.Thread(target=_flag_many, args=(str(run.path), s, 12)) for s in (24, 36)]
    for w in threads:
        w.start()
    for w in threads:
        w.join(120)
    assert all(p.wait(120) == 0 for p in procs)
    c = Curation(run)
    entries = c.entries()
    assert [e["seq"] for e in entries] == list(range(49))
    assert (c.state().flag[:48] == "verified").all() and c.state().flag[48] == ""
