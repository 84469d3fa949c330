"""A run's progress read back from its events, as the Train page shows it."""
import pytest

from icbpl_app.progress import format_seconds, summarize


def test_progress_from_events():
    t0 = 1000.0
    events = [{"type": "start", "time": t0, "resume": False},
              {"type": "data", "time": t0 + 1, "n_images": 300, "labels": True, "backbone": "scratch"},
              {"type": "epoch", "time": t0 + 3, "epoch": 1, "epochs": 4, "seconds": 2.0,
               "losses": {"total": 3.0, "mmd": 1.0}, "metrics": {"acc": 0.3, "nmi": 0.2, "ari": 0.1},
               "n_clusters_used": 7},
              {"type": "step", "time": t0 + 4, "epoch": 2, "epochs": 4, "step": 1, "steps": 2, "loss": 2.0}]
    p = summarize(events, "running", 4, now=t0 + 4.5)
    assert p.phase == "training" and p.epoch == 1 and p.epochs == 4
    assert p.fraction == pytest.approx(1.5 / 4)
    assert p.elapsed == pytest.approx(4.5)
    assert p.remaining == pytest.approx(2.5 * 2.0)
    table = p.table()
    assert table.loc[0, "loss_mmd"] == 1.0 and table.loc[0, "acc"] == 0.3 and p.has_labels
    done = events + [{"type": "epoch", "time": t0 + 9, "epoch": 4, "epochs": 4, "seconds": 2.0, "losses": {}},
                     {"type": "done", "time": t0 + 10}]
    p = summarize(done, "finished", 4, now=t0 + 100)
    assert p.phase == "finished" and p.fraction == 1.0 and p.remaining == 0 and p.elapsed == pytest.approx(10)
    resumed = done[:3] + [{"type": "cancelled", "time": t0 + 5}, {"type": "start", "time": t0 + 50},
                          {"type": "resumed", "time": t0 + 52, "epoch": 1}]
    p = summarize(resumed, "running", 4, now=t0 + 53)
    assert p.elapsed == pytest.approx(3) and p.epoch == 1 and p.phase == "training"
    assert summarize([], "starting", 4).phase == "starting"
    restarting = summarize(resumed[:4], "starting", 4, now=t0 + 60)      # resume launched, no event yet
    assert restarting.phase == "starting" and restarting.elapsed is None and restarting.epoch == 1
    assert format_seconds(None) == "—" and format_seconds(65) == "1m 05s" and format_seconds(3700) == "1h 01m"


def test_skipped_files_of_this_attempt_add_up():
    events = [{"type": "start", "time": 0}, {"type": "skipped", "time": 1, "count": 2, "files": []},
              {"type": "skipped", "time": 2, "count": 1, "files": []},          # failed to decode later
              {"type": "cancelled", "time": 3}, {"type": "start", "time": 4},
              {"type": "skipped", "time": 5, "count": 2, "files": []}, {"type": "skipped", "time": 6, "count": 1,
                                                                        "files": []}]
    assert summarize(events, "running").skipped == 3


def test_extraction_fills_the_bar_and_estimates_its_time_left():
    """Feature extraction (most of a run on own data): the bar is the share of the passes done, the
    time left comes from the pace so far, and a finished pass never reads as a stall."""
    from icbpl_app.progress import extraction_passes

    config = {"mode": "head", "n_views": 2, "neighbours_from": "backbone"}
    assert extraction_passes(config) == 3
    assert extraction_passes({"mode": "finetune", "neighbours_from": "mobilenet_v2_mid"}) == 1
    assert extraction_passes({"mode": "head", "n_views": 4, "neighbours_from": "dinov2_vits14"}) == 6
    t0 = 1000.0
    events = [{"type": "start", "time": t0}, {"type": "data", "time": t0 + 2, "n_images": 300},
              {"type": "extract", "time": t0 + 3, "what": "features", "done": 0, "total": 300},
              {"type": "extract", "time": t0 + 4, "what": "features", "done": 100, "total": 300}]
    p = summarize(events, "running", 10, now=t0 + 4, passes=3)
    assert p.phase == "extracting features"
    assert p.fraction == pytest.approx((100 / 300) / 3)
    assert p.detail == "features: 100/300 images (pass 1 of 3)"
    assert p.remaining == pytest.approx((200 + 2 * 300) / 100)        # 100 images a second
    events += [{"type": "extract", "time": t0 + 6, "what": "features", "done": 300, "total": 300}]
    p = summarize(events, "running", 10, now=t0 + 20, passes=3)
    assert p.fraction == pytest.approx(1 / 3) and "all 300 images extracted" in p.detail
    assert "(14s)" in p.detail                                         # how long the next step has taken
    # a pass without a start event (older engines) starts when the event before it was written
    events += [{"type": "extract", "time": t0 + 9, "what": "view 1/2", "done": 150, "total": 300}]
    p = summarize(events, "running", 10, now=t0 + 9, passes=3)
    assert p.passes[-1]["start"] == t0 + 6 and p.fraction == pytest.approx(1.5 / 3)
    assert p.detail == "view 1/2: 150/300 images (pass 2 of 3)"
    # passes served from the feature cache make no events; the first epoch hands the bar to training
    events += [{"type": "epoch", "time": t0 + 12, "epoch": 1, "epochs": 10, "seconds": 1.0, "losses": {}}]
    p = summarize(events, "running", 10, now=t0 + 12, passes=3)
    assert p.phase == "training" and p.fraction == pytest.approx(0.1) and p.remaining == pytest.approx(9.0)
