"""The command line as a user (or another tool) drives it: the installed `icbpl` command,
subprocesses, real files."""
import csv
import json
import signal
import time

import numpy as np
import pytest

from tests.helpers import icbpl, run_folder, start_icbpl

QUICK = ["--limit", "400", "--epochs", "4", "--neighbours-from", "pixels"]   # no second backbone to extract


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A small training on the bundled digits dataset (400 images, 4 epochs)."""
    runs = tmp_path_factory.mktemp("runs")
    proc = icbpl("train", "--dataset", "digits", *QUICK, "--runs-dir", runs)
    return run_folder(proc), proc


@pytest.mark.slow
def test_default_digits_training_clusters_well(tmp_path):
    proc = icbpl("train", "--runs-dir", tmp_path)          # every default: digits, its recipe, seed 0
    run_dir = run_folder(proc)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["acc"] > 0.9 and metrics["nmi"] > 0.85          # chance is about 0.1 / 0.0
    assert metrics["n_clusters_used"] == 10
    assert metrics["views_averaged"] == 4          # predicted from the mean over 4 fresh augmented copies


def test_a_small_digits_run_writes_its_results_and_events(digits_run):
    run_dir, proc = digits_run
    assert run_dir.is_dir() and run_dir.parent.exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"acc", "nmi", "ari", "n_clusters_used"} <= set(metrics)
    assert metrics["acc"] > 0.2                     # a random partition of 400 images scores about 0.14
    assert metrics["views_averaged"] == 4
    assert "epoch 1/" in proc.stderr and "ACC" in proc.stderr      # progress on stderr
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "start" and events[-1]["type"] == "done"
    assert any(e["type"] == "epoch" and "metrics" in e for e in events)


def test_export_writes_one_row_per_image(digits_run, tmp_path):
    run_dir, _ = digits_run
    out = tmp_path / "labels.csv"
    icbpl("export", run_dir, "--out", out)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 400
    assert list(rows[0])[:7] == ["index", "path", "cluster", "confidence", "margin", "label", "matched_class"]
    latents, centroids = np.load(run_dir / "latents.npy"), np.load(run_dir / "pedcc.npy")
    sims = latents @ centroids.T
    for row in rows[:50]:
        i = int(row["index"])
        assert int(row["cluster"]) == sims[i].argmax()
        assert float(row["confidence"]) == pytest.approx(sims[i].max(), abs=1e-5)
        assert float(row["margin"]) == pytest.approx(sims[i].max() - np.sort(sims[i])[-2], abs=1e-5)
    assert rows[0]["path"].startswith("digits:")


def test_runs_lists_status_and_metrics(digits_run):
    run_dir, _ = digits_run
    out = icbpl("runs", "--runs-dir", run_dir.parent).stdout
    line = next(l for l in out.splitlines() if run_dir.name in l)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "finished" in line and f"{metrics['acc']:.3f}" in line


def test_help_everywhere():
    for args in ([], ["train"], ["export"], ["runs"], ["resume"], ["curate"]):
        proc = icbpl(*args, "--help")
        assert proc.returncode == 0 and "usage" in proc.stdout


@pytest.mark.parametrize("args,fragment", [
    (["train", "--dataset", "nope"], "--dataset: must be one of"),
    (["train", "--epochs", "0"], "--epochs: must be between 1 and 5000, got 0"),
    (["bogus"], "invalid choice"),
    (["train", "--n-clusters", "1"], "must be between 2 and 1000, got 1"),
    (["train", "--clusters", "5000"], "must be between 2 and 1000, got 5000"),
    (["train", "--lr", "nan"], "--lr: must be a finite number"),
    (["train", "--w-mmd", "inf"], "--w-mmd: must be a finite number"),
    (["train", "--views", "-2"], "must be between 0 and 32, got -2"),
    (["train", "--image-size", "100000"], "--image-size: must be between 8 and 1024"),
    (["train", "--seed", "x"], "--seed: must be a whole number, got 'x'"),
])
def test_wrong_arguments_one_line_and_exit_2(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = icbpl(*args, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "runs").exists()     # no run folder for bad arguments


@pytest.mark.parametrize("args,fragment", [
    (["--backbone", "scratch", "--weights", "w.pth"], "takes no weights file"),
    (["--backbone", "resnet18_cifar"], "give it a weights file"),
    (["--backbone", "scratch-mlp", "--mode", "head"], "needs a pretrained backbone"),
])
def test_settings_that_cannot_work_are_refused_before_any_run_folder(args, fragment, tmp_path):
    proc = icbpl("train", *args, "--runs-dir", tmp_path / "runs", check=False)
    assert proc.returncode == 2 and fragment in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_old_flag_names_still_work(tmp_path):
    proc = icbpl("train", "--clusters", "3", "--neighbors", "5", "--heads", "2", "--views", "1", "--limit", "60",
                 "--epochs", "1", "--neighbours-from", "pixels", "--runs-dir", tmp_path, "--quiet")
    train = json.loads((run_folder(proc) / "config.json").read_text())
    assert train["n_views"] == 1
    assert {k: train["train"][k] for k in ("n_clusters", "n_neighbours", "n_heads")} == \
        {"n_clusters": 3, "n_neighbours": 5, "n_heads": 2}


def test_more_clusters_than_images_fails_clearly(tmp_path):
    proc = icbpl("train", "--dataset", "digits", "--limit", "20", "--n-clusters", "30", "--runs-dir", tmp_path,
                 check=False)
    assert proc.returncode == 1
    assert "30 clusters is more than the 20 images; choose 20 clusters or fewer (--n-clusters)" in proc.stderr
    run = next(tmp_path.iterdir())
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "30 clusters" in status["error"]


def test_same_seed_same_assignments(tmp_path):
    a = icbpl("train", "--dataset", "digits", *QUICK, "--seed", "3", "--runs-dir", tmp_path / "a", "--quiet")
    b = icbpl("train", "--dataset", "digits", *QUICK, "--seed", "3", "--runs-dir", tmp_path / "b", "--quiet")
    dir_a, dir_b = run_folder(a), run_folder(b)
    assert (dir_a / "assignments.csv").read_text() == (dir_b / "assignments.csv").read_text()
    np.testing.assert_array_equal(np.load(dir_a / "latents.npy"), np.load(dir_b / "latents.npy"))


def test_killed_run_resumes_to_the_same_result(tmp_path):
    args = ["train", "--dataset", "digits", "--limit", "600", "--epochs", "6", "--seed", "1", "--neighbours-from", "pixels"]
    straight = run_folder(icbpl(*args, "--runs-dir", tmp_path / "straight", "--quiet"))
    proc = start_icbpl(*args, "--runs-dir", tmp_path / "killed")
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline:
        found = list((tmp_path / "killed").glob("*/status.json"))
        if found and json.loads(found[0].read_text()).get("epoch", 0) >= 2:
            run_dir = found[0].parent
            break
        time.sleep(0.1)
    assert run_dir is not None, "the run never reached epoch 2"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "resume" in err
    assert json.loads((run_dir / "status.json").read_text())["state"] == "cancelled"
    assert not (run_dir / "latents.npy").exists()
    icbpl("resume", run_dir, "--quiet")
    np.testing.assert_array_equal(np.load(run_dir / "latents.npy"), np.load(straight / "latents.npy"))
    assert (run_dir / "assignments.csv").read_text() == (straight / "assignments.csv").read_text()


def test_a_run_stopped_during_feature_extraction_resumes_from_the_passes_it_finished(tmp_path):
    cache = tmp_path / "cache"
    args = ["train", "--dataset", "digits", "--limit", "600", "--backbone", "mobilenet_v2", "--image-size", "64",
            "--n-views", "3", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--cache-dir", str(cache)]
    proc = start_icbpl(*args)
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline and run_dir is None:
        for events in (tmp_path / "runs").glob("*/events.jsonl"):
            if '"what": "view 1/3"' in events.read_text():
                run_dir = events.parent
        time.sleep(0.05)
    assert run_dir is not None, "extraction never reached the first view"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped while extracting" in err and "resume" in err
    assert json.loads((run_dir / "status.json").read_text())["state"] == "cancelled"
    resumed = icbpl("resume", run_dir, "--cache-dir", cache)
    assert "extracting features" not in resumed.stderr          # the clean pass was cached before the stop
    assert "extracting view 3/3" in resumed.stderr
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"


def test_resume_with_a_changed_config_is_refused_and_nothing_is_lost(tmp_path):
    args = ["train", "--dataset", "digits", "--limit", "300", "--epochs", "2", "--neighbours-from", "pixels",
            "--runs-dir", tmp_path, "--quiet"]
    run_dir = run_folder(icbpl(*args))
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status, "state": "cancelled"}))
    config = json.loads((run_dir / "config.json").read_text())
    config["train"]["lr"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(config))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name not in ("status.json", "events.jsonl")}
    proc = icbpl("resume", run_dir, check=False)
    assert proc.returncode == 1
    assert "cannot resume" in proc.stderr and "train.lr" in proc.stderr
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name not in ("status.json", "events.jsonl")}
    assert after == before


def test_resume_refuses_a_finished_run(digits_run):
    run_dir, _ = digits_run
    proc = icbpl("resume", run_dir, check=False)
    assert proc.returncode == 1 and "already finished" in proc.stderr


def test_export_of_a_missing_run_fails_clearly(tmp_path):
    proc = icbpl("export", tmp_path / "nothing", "--out", tmp_path / "x.csv", check=False)
    assert proc.returncode == 1 and "not a run folder" in proc.stderr


def test_pretrained_head_mode_on_digits_uses_cached_features(tmp_path):
    args = ["train", "--dataset", "digits", "--backbone", "mobilenet_v2", "--image-size", "32", "--limit", "300",
            "--epochs", "3", "--n-views", "2", "--runs-dir", tmp_path]
    first = icbpl(*args)
    assert "mode head" in first.stderr and "extracting features" in first.stderr
    second = icbpl(*args)
    assert "extracting" not in second.stderr            # served from the feature cache
    run_dir = run_folder(second)
    assert np.load(run_dir / "features.npy").shape == (300, 1280)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["acc"] > 0.2 and metrics["views_averaged"] == 2   # chance is about 0.15
    plain = run_folder(icbpl(*args, "--no-average-views"))
    assert json.loads((plain / "metrics.json").read_text())["views_averaged"] == 0
    # the same training; only the prediction differs (each image's latent alone, not the mean over its views)
    np.testing.assert_array_equal(np.load(plain / "pedcc.npy"), np.load(run_dir / "pedcc.npy"))
    assert not np.allclose(np.load(plain / "latents.npy"), np.load(run_dir / "latents.npy"))


def test_runs_with_other_seeds_share_the_extracted_features_and_views(tmp_path):
    args = ["train", "--dataset", "digits", "--backbone", "mobilenet_v2", "--image-size", "32", "--epochs", "1",
            "--n-views", "1", "--runs-dir", tmp_path]      # all images: a subset would differ by seed
    first = icbpl(*args, "--seed", "0")
    assert "extracting view 1/1" in first.stderr
    second = icbpl(*args, "--seed", "1")
    assert "extracting" not in second.stderr
    runs = [run_folder(p) for p in (first, second)]
    np.testing.assert_array_equal(*(np.load(r / "features.npy") for r in runs))
    assert not np.array_equal(*(np.load(r / "latents.npy") for r in runs))   # the seed still trains differently
    more = icbpl(*args[:-4], "--n-views", "2", "--runs-dir", tmp_path)    # each pass is cached on its own:
    assert "extracting view 2/2" in more.stderr                            # only the new view is extracted
    assert "extracting features" not in more.stderr and "extracting view 1/2" not in more.stderr


def test_a_folder_of_images_of_mixed_sizes_trains_with_the_defaults(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(12):
        side = (20, 30, 40)[i % 3]
        path = tmp_path / "photos" / "ab"[i % 2] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (side, side + i, 3), dtype=np.uint8)).save(path)
    for backbone in ("mobilenet_v2", "scratch"):    # resized to the backbone's input size, or to 64 px
        proc = icbpl("train", "--dataset", "folder", "--data-root", tmp_path / "photos", "--backbone", backbone,
                     "--n-clusters", "2", "--epochs", "1", "--n-views", "1", "--runs-dir", tmp_path / "runs")
        run_dir = run_folder(proc)
        assert len(np.load(run_dir / "latents.npy")) == 12


def test_an_empty_folder_is_refused_clearly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = icbpl("train", "--dataset", "folder", "--data-root", empty, "--runs-dir", tmp_path / "runs", check=False)
    assert proc.returncode == 2                     # refused while choosing the recipe: before any run folder
    assert "no images" in proc.stderr.lower() and str(empty) in proc.stderr and "--data-root" in proc.stderr
    assert not list((tmp_path / "runs").glob("*"))
    proc = icbpl("train", "--dataset", "folder", "--data-root", empty, "--recipe", "dataset", "--runs-dir",
                 tmp_path / "runs", check=False)
    assert proc.returncode == 1                     # a named recipe: the run itself finds no images
    assert "no images" in proc.stderr.lower() and str(empty) in proc.stderr


def test_help_and_argument_errors_answer_without_importing_torch():
    """What `icbpl --help` and a wrong argument run: parsing only, no torch (they answer at once)."""
    import subprocess
    import sys
    code = ("import sys\nfrom icbpl_core import cli\nfor argv in (['--help'], ['train', '--help'], "
            "['train', '--epochs', '0']):\n    try:\n        cli.main(argv)\n    except SystemExit:\n"
            "        pass\nprint('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
