"""ImageNet loaders and the WordNet class hierarchy."""

import numpy as np
import pytest

from audits.imagenet import (ClassHierarchy, load_classes, load_mistakes, load_real_labels, load_val_labels,
                             val_index)


@pytest.fixture(scope="module")
def imagenet(shared_data):
    return shared_data / "imagenet"


@pytest.fixture(scope="module")
def hierarchy(imagenet):
    classes = load_classes(imagenet / "classes" / "class_info.json")
    return ClassHierarchy.from_files(imagenet / "hierarchy" / "wordnet.is_a.txt", classes.wnids,
                                     words_path=imagenet / "hierarchy" / "words.txt")


def _up_then_down_bfs(edges, a, b):
    """Breadth-first search from a over states (node, phase): go up to parents, switch once to going
    down to children; the first time b is reached going down is the distance."""
    parents, children = {}, {}
    for p, c in edges:
        parents.setdefault(c, []).append(p)
        children.setdefault(p, []).append(c)
    seen = {(a, "up"), (a, "down")}
    frontier, steps = [(a, "up"), (a, "down")], 0
    while frontier:
        if (b, "down") in frontier:
            return steps
        nxt = []
        for node, phase in frontier:
            moves = [(p, "up") for p in parents.get(node, [])] + [(c, "down") for c in children.get(node, [])]
            for state in moves if phase == "up" else moves[len(parents.get(node, [])):]:
                if state not in seen:
                    seen.add(state)
                    nxt.append(state)
                    if state[1] == "up":  # switching direction costs nothing
                        seen.add((state[0], "down"))
                        nxt.append((state[0], "down"))
        frontier, steps = nxt, steps + 1
    return None


@pytest.mark.parametrize(("a", "b", "distance", "ancestor"), [
    ("tench", "goldfish", 2, "cyprinid"),
    ("tabby", "tiger cat", 2, "domestic cat"),
    ("laptop", "notebook", 2, "portable computer"),
    ("Siberian husky", "Eskimo dog", 3, "working dog"),
    ("dough", "bagel", 6, "foodstuff"),
    ("tench", "toilet tissue", 21, "physical entity"),
])
def test_distances_match_the_readme_examples(hierarchy, imagenet, a, b, distance, ancestor):
    names = load_classes(imagenet / "classes" / "class_info.json").names
    i, j = names.index(a), names.index(b)
    assert hierarchy.distance(i, j) == distance == hierarchy.distance(j, i)
    assert hierarchy.name(hierarchy.closest_common_ancestor(i, j)).startswith(ancestor)


def test_distance_matrix_properties(hierarchy, imagenet):
    d = hierarchy.distances
    assert d.shape == (1000, 1000) and (np.diagonal(d) == 0).all()
    np.testing.assert_array_equal(d, d.T)
    off = d[np.triu_indices(1000, 1)]
    # README section 8: range 2..26, median 13, 1,122 sibling pairs, 7,398 pairs within 4
    assert (off.min(), off.max(), np.median(off)) == (2, 26, 13)
    assert (off == 2).sum() == 1122 and (off <= 4).sum() == 7398
    assert (hierarchy.depths.min(), hierarchy.depths.max(), np.median(hierarchy.depths)) == (4, 17, 10)


def test_distance_matches_an_up_then_down_search_on_random_pairs(hierarchy, imagenet):
    from audits.imagenet import read_is_a

    edges = read_is_a(imagenet / "hierarchy" / "wordnet.is_a.txt")
    rng = np.random.default_rng(0)
    for a, b in rng.integers(0, 1000, size=(6, 2)):
        assert hierarchy.distance(a, b) == _up_then_down_bfs(edges, hierarchy.wnids[a], hierarchy.wnids[b])


def test_min_runs_over_all_common_ancestors_in_a_dag():
    """A diamond with a shortcut: x and y meet at 'p' in 2 steps although the first parent chain is longer."""
    edges = [("root", "a"), ("a", "b"), ("b", "x"), ("root", "y"), ("p", "x"), ("p", "y"), ("root", "p")]
    h = ClassHierarchy(edges, ["x", "y"])
    assert h.distance(0, 1) == 2
    with pytest.raises(ValueError, match="no parent"):
        ClassHierarchy(edges, ["x", "nowhere"])


def test_ancestor_depth_is_the_depth_of_the_closest_common_ancestor():
    """Hand-built DAG. x and y meet at p (distance 2, depth 1) before root (distance 3). u and v meet
    at s and at t at distance 2 each: the deeper one (s, depth 2) counts. m and n share no ancestor."""
    edges = [("root", "a"), ("a", "b"), ("b", "x"), ("root", "y"), ("p", "x"), ("p", "y"), ("root", "p"),
             ("root", "q"), ("q", "s"), ("root", "t"), ("s", "u"), ("t", "u"), ("s", "v"), ("t", "v"),
             ("r1", "m"), ("r2", "n")]
    h = ClassHierarchy(edges, ["x", "y", "u", "v", "m", "n"])
    assert h.depths.tolist() == [2, 1, 2, 2, 1, 1]  # x: root-p-x is shorter than root-a-b-x
    assert (h.distance(0, 1), h.ancestor_depths[0, 1], h.closest_common_ancestor(0, 1)) == (2, 1, "p")
    assert (h.distance(2, 3), h.ancestor_depths[2, 3], h.closest_common_ancestor(2, 3)) == (2, 2, "s")
    assert h.distance(4, 5) == h.ancestor_depths[4, 5] == -1 and h.closest_common_ancestor(4, 5) is None
    np.testing.assert_array_equal(np.diagonal(h.ancestor_depths), h.depths)  # a class is its own ancestor
    np.testing.assert_array_equal(h.ancestor_depths, h.ancestor_depths.T)
    with pytest.raises(ValueError, match="reach no root"):
        ClassHierarchy([("c1", "c2"), ("c2", "c1")], ["c1"])


def test_ancestor_depths_on_wordnet(hierarchy, imagenet):
    names = load_classes(imagenet / "classes" / "class_info.json").names
    tabby, tiger_cat, dough, bagel = (names.index(n) for n in ("tabby", "tiger cat", "dough", "bagel"))
    assert hierarchy.ancestor_depths[tabby, tiger_cat] > hierarchy.ancestor_depths[dough, bagel] > 0
    # on a tree the common-ancestor depth is (depth a + depth b - distance) / 2; WordNet is nearly a tree
    d, a = hierarchy.depths.astype(int), hierarchy.ancestor_depths.astype(int)
    tree = (d[:, None] + d[None, :] - hierarchy.distances) / 2
    assert (a == tree).mean() > 0.9 and (a >= 0).all()


def test_real_scores_and_class_confusion_loaders(imagenet, tmp_path):
    from audits.imagenet import load_class_confusion, load_real_scores

    scores = load_real_scores(imagenet / "real" / "scores.npz")
    assert len(scores) == 184_962 and all(0 <= v <= 1 for v in list(scores.values())[:1000])
    assert (41206, 615) in scores  # ILSVRC2012_val_00041207.JPEG, label 615: file number - 1
    wnids = load_classes(imagenet / "classes" / "class_info.json").wnids
    counts = load_class_confusion(imagenet / "mistakes" / "class_confusion_wnids.json", wnids)
    np.testing.assert_array_equal(counts, counts.T)
    assert counts.sum() == 2 * 545 and (counts > 0).sum() == 2 * 481
    with pytest.raises(ValueError, match="not one of the 1000 classes"):
        load_class_confusion(imagenet / "mistakes" / "class_confusion_synsets.json", wnids)


def test_loaders(imagenet):
    real = load_real_labels(imagenet / "real" / "real.json")
    val = load_val_labels(imagenet / "val_labels.txt")
    assert len(real) == len(val) == 50_000 and (val >= 0).all()
    assert sum(1 for s in real if not s) == 3163
    assert val[:3].tolist() == [65, 970, 230]  # first lines of val.txt
    vit = load_mistakes(imagenet / "mistakes" / "vit3b_mistakes.json")
    soups = load_mistakes(imagenet / "mistakes" / "greedy_soups_mistakes.json")
    assert (len(vit), len(soups)) == (378, 249)
    assert sum(m.category == "fine_grained_oov" for m in soups.values()) == 26  # both spellings, 17 + 9
    m = vit["ILSVRC2012_val_00000612.JPEG"]
    assert (m.val_index, m.predicted, m.category, m.severity) == (611, 192, "fine_grained", "minor")
    for name in ("class_info.json", "imagenet_class_index.json", "synset_words.txt"):
        classes = load_classes(imagenet / "classes" / name)
        assert len(classes.wnids) == 1000 and classes.wnids[0] == "n01440764"
        assert classes.names[0] == "tench"


def test_val_index_is_one_based_in_file_names():
    assert val_index("ILSVRC2012_val_00000001.JPEG") == 0
    assert val_index("some/dir/ILSVRC2012_val_00050000.JPEG") == 49_999
    for bad in ("ILSVRC2012_val_00000000.JPEG", "ILSVRC2012_val_1.JPEG", "n01440764_tench.JPEG"):
        with pytest.raises(ValueError, match="not an ILSVRC2012 validation file name"):
            val_index(bad)


def test_val_labels_are_placed_by_file_name(tmp_path):
    path = tmp_path / "val.txt"
    path.write_text("ILSVRC2012_val_00000003.JPEG 7\nILSVRC2012_val_00000001.JPEG 5\n")
    labels = load_val_labels(path)
    assert labels[:3].tolist() == [5, -1, 7]
    path.write_text("ILSVRC2012_val_00000003.JPEG seven\n")
    with pytest.raises(ValueError, match=r"val.txt:1: expected"):
        load_val_labels(path)
