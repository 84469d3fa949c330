import json
import subprocess
import sys

import numpy as np
import pytest

from icbpl_core.method.neighbours import cosine_topk


def _brute_force(x, k):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k], np.sort(sim, axis=1)[:, ::-1][:, :k]


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_matches_brute_force_for_any_block_size(block):
    x = np.random.default_rng(0).standard_normal((300, 12)).astype(np.float32)
    idx, sim = cosine_topk(x, 5, block_size=block)
    ref_idx, ref_sim = _brute_force(x, 5)
    np.testing.assert_allclose(sim, ref_sim, atol=1e-5)
    np.testing.assert_array_equal(idx, ref_idx)
    assert not (idx == np.arange(300)[:, None]).any()


def test_queries_against_a_base_set_keep_self_matches():
    x = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    idx, sim = cosine_topk(x, 1, queries=x[:10])
    np.testing.assert_array_equal(idx[:, 0], np.arange(10))
    np.testing.assert_allclose(sim[:, 0], 1.0, atol=1e-5)


def test_rejects_impossible_k_and_bad_shapes():
    x = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="between 1 and 3"):
        cosine_topk(x, 4)
    with pytest.raises(ValueError, match="2-D"):
        cosine_topk(np.ones(5), 1)


def test_forty_thousand_points_without_an_n_by_n_matrix():
    # An N x N float32 matrix for N = 40,000 is 6.4 GB; the blocked search must stay far below.
    code = """
import json, resource, numpy as np
from icbpl_core.method.neighbours import cosine_topk
x = np.random.default_rng(0).standard_normal((40000, 16)).astype(np.float32)
idx, sim = cosine_topk(x, 10)
print(json.dumps({"shape": list(idx.shape), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "self": int((idx == np.arange(40000)[:, None]).sum())}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shape"] == [40000, 10]
    assert result["self"] == 0
    assert result["peak_mb"] < 3000, result
