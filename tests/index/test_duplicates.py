"""Duplicates: hashes see pixels or bytes; planted near copies form groups; splits leak when they should."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.errors import UsageError
from curate.index import (
    Pairs,
    connected_components,
    cross_split_pairs,
    file_hashes,
    find_exact_duplicates,
    find_near_duplicates,
    group_exact,
    near_duplicate_pairs,
    pixel_hashes,
    representatives,
)

# Pooled-pixel features of CIFAR test images: planted copies lie within 0.04 cosine distance, the closest
# unrelated pair of the first 932 test images at 0.063 (measured), so 0.05 separates them.
THRESHOLD = 0.05


def encode(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


# ---- hashes ---------------------------------------------------------------------------------------
def test_pixel_hashes_match_lossless_reencodes_and_file_hashes_do_not(tmp_path, cifar_test):
    """PNG and BMP files of one image differ in bytes but decode to the same pixels; the JPEG copy does not."""
    image = cifar_test["images"][0]
    png, bmp = encode(image, "PNG"), encode(image, "BMP")
    (tmp_path / "a.png").write_bytes(png)
    (tmp_path / "a.bmp").write_bytes(bmp)
    (tmp_path / "copy.png").write_bytes(png)
    decoded = [decode(png), decode(bmp), cifar_test["jpeg"](0), cifar_test["images"][1]]
    px = pixel_hashes(decoded)
    assert px[0] == px[1] and len(set(px)) == 3
    assert px[0] == pixel_hashes(image[None])[0]
    fh = file_hashes([tmp_path / "a.png", tmp_path / "a.bmp", tmp_path / "copy.png"])
    assert fh[0] != fh[1] and fh[0] == fh[2]


def test_pixel_hashes_see_the_shape_not_only_the_bytes():
    """The same bytes as 4x6 and 6x4 images are different images."""
    flat = np.arange(24, dtype=np.uint8)
    assert len(set(pixel_hashes([flat.reshape(4, 6), flat.reshape(6, 4)]))) == 2
    with pytest.raises(UsageError, match="uint8"):
        pixel_hashes([np.zeros((4, 4), np.float32)])


def test_group_exact_and_exact_duplicate_groups():
    """Equal hashes share a group id numbered by first row; each dropped row is paired with its keeper."""
    hashes = ["b", "a", "b", "c", "a", "b"]
    np.testing.assert_array_equal(group_exact(hashes), [0, 1, 0, 2, 1, 0])
    groups = find_exact_duplicates(hashes, prefer=np.array([0, 0, 5, 0, 0, 1.0]))
    np.testing.assert_array_equal(groups.representative, [False, True, True, True, False, False])
    assert (groups.n_groups, groups.n_duplicates) == (2, 3)
    np.testing.assert_array_equal(groups.pairs.edges, [[0, 2], [1, 4], [2, 5]])


# ---- graphs ---------------------------------------------------------------------------------------
def test_connected_components_of_a_hand_drawn_graph():
    """0-1-2 chain, 4-5 edge, 3 and 6 alone: four components, numbered by first row."""
    comps = connected_components(7, np.array([[1, 2], [0, 1], [5, 4]]))
    np.testing.assert_array_equal(comps, [0, 0, 0, 1, 2, 2, 3])
    np.testing.assert_array_equal(connected_components(3, np.zeros((0, 2), np.int64)), [0, 1, 2])
    with pytest.raises(UsageError, match="rows in 0..6"):
        connected_components(7, np.array([[0, 7]]))


def test_representatives_prefer_the_highest_score_then_the_lowest_row():
    comps = np.array([0, 0, 1, 1, 1, 2])
    np.testing.assert_array_equal(representatives(comps), [1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(representatives(comps, prefer=np.array([1, 2, 3, 9, 9, 0])), [0, 1, 0, 1, 0, 1])


# ---- near duplicates on real images -------------------------------------------------------------
@pytest.fixture(scope="module")
def planted(cifar_test, pooled_features):
    """40 distinct CIFAR test images plus 4 planted copies of images 0-3: exact, 1-px shift, noise, JPEG."""
    images = cifar_test["images"]
    base = images[10:50].copy()
    base[:4] = images[:4]
    shifted = images[1].copy()
    shifted[:, 1:] = images[1][:, :-1]
    noisy = np.clip(images[2] + np.random.default_rng(0).normal(0, 4, images[2].shape), 0, 255).astype(np.uint8)
    copies = np.stack([images[0], shifted, noisy, cifar_test["jpeg"](3)])
    all_images = np.concatenate([base, copies])
    return pooled_features(all_images), all_images


def test_planted_near_duplicates_form_one_group_each(planted):
    """Rows i and 40 + i (i < 4) are a group of two; the 36 unrelated images stay alone."""
    features, _ = planted
    before = features.copy()
    groups = find_near_duplicates(features, threshold=THRESHOLD, k=5)
    np.testing.assert_array_equal(features, before)  # the caller's array is untouched
    comps = groups.components
    for i in range(4):
        assert comps[i] == comps[40 + i]
    assert groups.n_groups == 4 and (groups.sizes[comps[:4]] == 2).all()
    assert len(np.unique(comps)) == 40  # 36 singletons + 4 pairs
    np.testing.assert_array_equal(groups.pairs.edges, [[0, 40], [1, 41], [2, 42], [3, 43]])
    assert groups.representative[:40].all() and not groups.representative[40:].any()


def test_exact_copy_is_also_an_exact_pixel_duplicate(planted):
    """Only the untouched copy matches by pixel hash; shift, noise and JPEG need the embedding."""
    _, images = planted
    groups = find_exact_duplicates(pixel_hashes(images))
    np.testing.assert_array_equal(groups.pairs.edges, [[0, 40]])


def test_leaky_split_finds_a_test_image_copied_into_train(cifar_test, pooled_features):
    """A JPEG copy of test image 5 placed in train is the one leak; the rest of train is unrelated."""
    images = cifar_test["images"]
    test_images, train_images = images[:20], np.concatenate([images[20:50], cifar_test["jpeg"](5)[None]])
    features = pooled_features(np.concatenate([test_images, train_images]))
    splits = np.array(["test"] * 20 + ["train"] * 31)
    leaks = cross_split_pairs(features, splits, threshold=THRESHOLD)
    np.testing.assert_array_equal(leaks.edges, [[5, 50]])
    assert leaks.distance[0] < THRESHOLD
    no_leak = cross_split_pairs(features[:50], splits[:50], threshold=THRESHOLD)
    assert len(no_leak) == 0
    with pytest.raises(UsageError, match="`reference_split` 'val' names no rows; splits present: test, train"):
        cross_split_pairs(features, splits, threshold=THRESHOLD, reference_split="val")


# ---- properties -------------------------------------------------------------------------------------
def near_copies(clustered, seed: int) -> np.ndarray:
    """Clustered points plus jittered copies of a few of them, so pairs exist at many distances."""
    rng = np.random.default_rng(seed)
    e = clustered(40, 6, clusters=5, spread=0.5, seed=seed)
    src = rng.integers(0, 40, 10)
    return np.concatenate([e, e[src] + rng.normal(0, 0.05, (10, 6)).astype(np.float32)])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), t_low=st.floats(0, 0.3), t_gap=st.floats(0, 0.3))
def test_lowering_the_threshold_only_splits_components(clustered, seed, t_low, t_gap):
    """Components at a lower threshold refine those at a higher one: a stricter threshold never merges."""
    e = near_copies(clustered, seed)
    low = find_near_duplicates(e, threshold=t_low, k=6).components
    high = find_near_duplicates(e, threshold=t_low + t_gap, k=6).components
    for c in np.unique(low):
        assert len(np.unique(high[low == c])) == 1


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), threshold=st.floats(0, 0.5))
def test_pairs_are_symmetric_and_equal_the_brute_force_set(clustered, seed, threshold):
    """With k = N - 1 the pairs are exactly {i < j: numpy cosine distance <= t}, whatever the row order."""
    e = near_copies(clustered, seed)
    n = len(e)
    en = e / np.linalg.norm(e, axis=1, keepdims=True)
    dist = 1.0 - en.astype(np.float64) @ en.T.astype(np.float64)
    pairs = near_duplicate_pairs(e, threshold=threshold, k=n - 1)
    found = set(zip(pairs.i.tolist(), pairs.j.tolist()))
    margin = np.abs(dist - threshold) > 1e-5  # float32 vs float64 at the boundary
    expected = {(i, j) for i, j in zip(*np.nonzero(np.triu(dist <= threshold, 1))) if margin[i, j]}
    assert expected <= found
    assert not [(i, j) for i, j in found - expected if margin[i, j]]
    np.testing.assert_allclose(pairs.distance, dist[pairs.i, pairs.j], atol=1e-5)
    perm = np.random.default_rng(seed).permutation(n)  # row order must not matter
    permuted = near_duplicate_pairs(e[perm], threshold=threshold, k=n - 1)
    back = {tuple(sorted((int(perm[i]), int(perm[j])))) for i, j in zip(permuted.i, permuted.j)}
    assert back == found


def test_threshold_and_index_checks(planted):
    features, _ = planted
    with pytest.raises(UsageError, match="`threshold` must be a distance >= 0"):
        near_duplicate_pairs(features, threshold=-0.1)
    from curate.index import build_index

    with pytest.raises(UsageError, match="build the index on these rows"):
        near_duplicate_pairs(features, threshold=0.1, index=build_index(features[:10]))
    assert isinstance(near_duplicate_pairs(features, threshold=0.0), Pairs)


def test_auto_graph_switches_to_ivf_for_many_rows_and_still_finds_the_plants(planted, monkeypatch):
    """Above EXACT_GRAPH_MAX rows the candidate graph comes from IVF with few probes; tight duplicates survive it."""
    import curate.index.knn as knn

    built = []
    real_build = knn.build_index
    monkeypatch.setattr(knn, "build_index", lambda x, **kw: built.append(kw) or real_build(x, **kw))
    monkeypatch.setattr(knn, "EXACT_GRAPH_MAX", 10)
    features, _ = planted
    pairs = near_duplicate_pairs(features, threshold=THRESHOLD, k=5)
    assert [(b["kind"], b["nprobe"]) for b in built] == [("ivf", knn.GRAPH_NPROBE)]
    assert built[0]["nlist"] == round(np.sqrt(len(features)))
    np.testing.assert_array_equal(pairs.edges, [[0, 40], [1, 41], [2, 42], [3, 43]])
