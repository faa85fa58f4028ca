"""bootstrap: within-group multiplicities, weighted confusion counts, and the crossed all-pairs counts
checked against explicit sums over every face x text pair."""
import numpy as np
import pytest

from emotion_fusion.scoring.bootstrap import class_blocks, crossed_counts, multiplicities, weighted_confusion


def test_multiplicities_keep_each_group_size_and_one_group_is_the_textbook_bootstrap():
    groups = [np.array([0, 3, 4]), np.array([1, 2, 5, 6, 7])]
    w = multiplicities(groups, 9, 200, np.random.default_rng(1))
    assert w.shape == (200, 9) and (w[:, 8] == 0).all()          # item 8 is in no group
    np.testing.assert_array_equal(w[:, groups[0]].sum(1), 3)
    np.testing.assert_array_equal(w[:, groups[1]].sum(1), 5)
    assert len({row.tobytes() for row in w}) > 150                  # resamples differ
    idx = np.random.default_rng(7).integers(0, 6, (30, 6))
    ref = np.stack([np.bincount(r, minlength=6) for r in idx])
    np.testing.assert_array_equal(multiplicities([np.arange(6)], 6, 30, np.random.default_rng(7)), ref)


def test_weighted_confusion_is_a_weighted_count():
    y, pred = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0])
    c = weighted_confusion(np.array([[1, 2, 0, 3.0]]), y, pred)[0]
    assert (c[0, 0], c[0, 1], c[1, 1], c[2, 0], c.sum()) == (1, 2, 0, 3, 6)


def test_crossed_counts_equal_the_explicit_sum_over_pairs():
    # n_c * sum_ij W_i V_j [label_ij = k] / (sum W * sum V) for each class c, for the three label shapes.
    rng = np.random.default_rng(3)
    y_img, y_txt = rng.integers(0, 3, 40), rng.integers(0, 3, 55)
    blocks = class_blocks(y_img, y_txt)
    labels = {"face": [rng.integers(0, 7, (f.size, 1)) for _, f, _ in blocks],
              "text": [rng.integers(0, 7, (1, t.size)) for *_, t in blocks],
              "pair": [np.where(rng.random((f.size, t.size)) < .6, c, rng.integers(0, 7, (f.size, t.size)))
                       for c, f, t in blocks]}
    wf = multiplicities([f for _, f, _ in blocks], 40, 5, rng)
    wt = multiplicities([t for *_, t in blocks], 55, 5, rng)
    wfb, wtb = [wf[:, f] for _, f, _ in blocks], [wt[:, t] for *_, t in blocks]
    for kind, lab in labels.items():
        got = crossed_counts(blocks, lab, wfb, wtb)
        for b in range(5):
            ref = np.zeros((7, 7))
            for (c, f, t), l, fw, tw in zip(blocks, lab, wfb, wtb):
                full = np.broadcast_to(l, (f.size, t.size))
                pair_w = np.outer(fw[b], tw[b])
                for k in range(7):
                    ref[c, k] = f.size * pair_w[full == k].sum() / pair_w.sum()
            np.testing.assert_allclose(got[b], ref, atol=1e-9, err_msg=kind)
        # the point value: unit weights, each face counted once, averaged over its class's texts
        ones = [np.ones((1, f.size)) for _, f, _ in blocks], [np.ones((1, t.size)) for *_, t in blocks]
        point = crossed_counts(blocks, lab, *ones)[0]
        np.testing.assert_allclose(point.sum(1)[:3], np.bincount(y_img, minlength=3))
        assert point[3:].sum() == pytest.approx(0)
