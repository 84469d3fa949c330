"""Galleries: sorted, filtered and paged by gallery.browse; file names from image ids."""
import numpy as np
import pandas as pd
import pytest

from icbpl_app.gallery import SORTS, browse, file_name


@pytest.fixture
def table():
    return pd.DataFrame({"index": np.arange(10), "id": [f"cls/img_{(7 * i) % 10}.png" for i in range(10)],
                         "cluster": [0, 1, 2, 0, 1, 2, 0, 1, 2, 0], "confidence": np.linspace(0.9, 0.0, 10),
                         "margin": [0.5, 0.1, 0.3, 0.2, 0.9, 0.0, 0.4, 0.8, 0.6, 0.7],
                         "label": [1, 1, 0, 0, 2, 2, 1, 0, 2, 1]})


def test_file_name():
    assert file_name("shapes/triangle/img_3.png") == "img_3.png"
    assert file_name("C:\\data\\x.jpg") == "x.jpg"
    assert file_name("digits:12") == "digits:12"


def test_every_sort(table):
    order = [5, 2, 8, 0]
    assert browse(table, order).indices.tolist() == order                        # as listed
    assert browse(table, order, descending=True).indices.tolist() == order[::-1]
    assert browse(table, order, "index").indices.tolist() == [0, 2, 5, 8]
    assert browse(table, order, "confidence", descending=True).indices.tolist() == [0, 2, 5, 8]
    assert browse(table, order, "margin").indices.tolist() == [5, 2, 0, 8]
    assert browse(table, order, "label").indices.tolist() == [2, 0, 5, 8]         # ties keep the order given
    names = [file_name(table.loc[i, "id"]) for i in browse(table, None, "file name").indices]
    assert names == sorted(names)
    assert set(SORTS) == {"as listed", "confidence", "margin", "label", "index", "file name"}
    with pytest.raises(ValueError):
        browse(table, order, "colour")


def test_filters(table):
    assert browse(table, None, labels=[1]).indices.tolist() == [0, 1, 6, 9]
    assert browse(table, None, clusters=[2]).indices.tolist() == [2, 5, 8]
    assert browse(table, None, labels=[2], clusters=[2]).indices.tolist() == [5, 8]
    assert browse(table, None, labels=[], clusters=[]).total == 10               # empty: no filter
    assert browse(table, None, labels=[7]).total == 0


def test_pages_have_no_cap(table):
    big = pd.concat([table.assign(index=table["index"] + 10 * k) for k in range(50)], ignore_index=True)
    pages = [browse(big, None, "index", page=p, per_page=60) for p in range(9)]
    assert pages[0].pages == 9 and pages[0].total == 500
    assert np.concatenate([p.indices for p in pages[:9]]).tolist() == list(range(500))
    last = browse(big, None, page=99, per_page=60)                               # past the end: the last page
    assert last.page == 8 and last.first == 480 and len(last.indices) == 20
