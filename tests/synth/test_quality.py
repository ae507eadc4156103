"""KID and FID against hand-computable cases and a second implementation; the sample sheet layout."""

import numpy as np
import scipy.linalg

from synth.quality import class_grid, fid, frechet_distance, kid, mmd2_unbiased

RNG = np.random.default_rng(0)


def test_fid_is_zero_for_identical_sets_and_the_squared_shift_for_translated_sets():
    """Translation keeps the covariance exactly, so FID = ||shift||^2 (the identity-covariance case on paper)."""
    real = RNG.normal(size=(200, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert abs(fid(real, real)) < 1e-6
    np.testing.assert_allclose(fid(real, real + shift), (shift ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(frechet_distance(np.zeros(3), np.eye(3), np.ones(3), np.eye(3)), 3.0, atol=1e-9)


def test_frechet_distance_matches_scipy_sqrtm():
    a, b = RNG.normal(size=(5, 5)), RNG.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = RNG.normal(size=5), RNG.normal(size=5)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    np.testing.assert_allclose(frechet_distance(mu1, c1, mu2, c2), expected, rtol=1e-6)


def test_kid_matches_a_loop_and_separates_shifted_sets():
    """Unbiased MMD^2 equals the pairwise-loop definition; same-distribution sets score ~0, shifted ones clearly > 0."""
    x, y = RNG.normal(size=(7, 3)), RNG.normal(size=(5, 3)) + 0.3
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    loop = (sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
            + sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
            - 2 * sum(k(a, b) for a in x for b in y) / 35)
    np.testing.assert_allclose(mmd2_unbiased(x, y), loop, rtol=1e-10)
    a, b = RNG.normal(size=(300, 8)), RNG.normal(size=(300, 8))
    same, shifted = kid(a, b).mean, kid(a, b + 1.0).mean
    assert abs(same) < 0.05 * shifted and shifted > 0.5
    subsets = kid(a, b + 1.0, subset_size=100, subsets=10)
    assert subsets.subsets == 10 and abs(subsets.mean - shifted) < 0.2 * shifted


def test_class_grid_puts_the_jth_image_of_class_k_at_row_k_column_j():
    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8) * 10
    labels = np.array([1, 0, 1, 1, 0])
    sheet = class_grid(images, labels, num_classes=3, per_class=2, pad=1)
    assert sheet.shape == (3 * 3 + 1, 2 * 3 + 1, 3)
    cell = lambda r, c: sheet[r * 3 + 1:r * 3 + 3, c * 3 + 1:c * 3 + 3]  # noqa: E731
    assert (cell(0, 0) == 10).all() and (cell(0, 1) == 40).all()
    assert (cell(1, 0) == 0).all() and (cell(1, 1) == 20).all()  # the third image of class 1 is left out
    assert (cell(2, 0) == 255).all()  # no samples of class 2: blank


def test_class_grid_of_no_kept_samples_is_a_blank_sheet_of_their_size():
    """A filter may keep none of the samples: the `kept` sheet is blank, the size of a full one."""
    sheet = class_grid(np.zeros((0, 4, 4, 3), np.uint8), np.zeros(0, int), num_classes=2, per_class=3, pad=1)
    assert sheet.shape == (2 * 5 + 1, 3 * 5 + 1, 3) and (sheet == 255).all()
