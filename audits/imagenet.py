"""Loaders for ImageNet label and audit files, and the WordNet class hierarchy.

Every loader takes an explicit path, so this package never needs ``shared/``. Class indices are
the standard 0..999 (position of the wnid in sorted order). Validation images are keyed by their
file name ``ILSVRC2012_val_XXXXXXXX.JPEG``; index ``i`` (0-based) is file number ``i + 1``,
always through :func:`val_index`, never through a loader's order.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from audits.mistakes import AnnotatedMistake, normalize_category, normalize_severity

NUM_VAL = 50_000
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")


def val_index(filename: str) -> int:
    """0-based validation index of ``ILSVRC2012_val_XXXXXXXX.JPEG`` (file 1 is index 0)."""
    match = _VAL_NAME.match(Path(filename).name)
    if match is None or not 1 <= int(match.group(1)) <= NUM_VAL:
        raise ValueError(f"`{filename}` is not an ILSVRC2012 validation file name "
                         f"(ILSVRC2012_val_00000001.JPEG .. ILSVRC2012_val_{NUM_VAL:08d}.JPEG)")
    return int(match.group(1)) - 1


def load_real_labels(path: str | Path) -> list[list[int]]:
    """ReaL label sets (``real.json``): entry ``i`` belongs to validation index ``i``; ``[]`` = no label fits."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list) or not all(isinstance(s, list) for s in data):
        raise ValueError(f"`{path}` must hold a JSON list of label lists, as real.json does")
    return [[int(c) for c in s] for s in data]


def load_val_labels(path: str | Path) -> np.ndarray:
    """Original labels (N_val,) int64 from Caffe's ``val.txt`` lines ``<file name> <label>``.

    Rows are placed by file name, so a shuffled file loads the same; files the list lacks get -1.
    """
    labels = np.full(NUM_VAL, -1, dtype=np.int64)
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{lineno}: expected '<file name> <label>', got {line!r}")
        labels[val_index(parts[0])] = int(parts[1])
    return labels


def load_mistakes(path: str | Path) -> dict[str, AnnotatedMistake]:
    """The imagenet-mistakes metadata (``vit3b_mistakes.json`` etc.): file name -> annotated mistake.

    Category and severity strings are normalised to the curate schema
    (:data:`audits.mistakes.CATEGORIES`, :data:`audits.mistakes.SEVERITIES`).
    """
    data = json.loads(Path(path).read_text())
    out = {}
    for name, entry in data.items():
        out[name] = AnnotatedMistake(
            filename=name, val_index=val_index(name), predicted=int(entry["top_prediction"]),
            category=normalize_category(entry["failure category"]),
            severity=normalize_severity(entry["failure severity"]))
    return out


def load_real_scores(path: str | Path) -> dict[tuple[int, int], float]:
    """ReaL's per-(image, label) Dawid-Skene scores (``scores.npz``): {(val index, class): score in [0, 1]}.

    Only the labels the raters were shown are present (a model's proposals), so a missing pair
    means "not rated", not "rated absent".
    """
    with np.load(path, allow_pickle=False) as data:
        info, scores = data["info"], data["tensor"]
    if info.ndim != 2 or info.shape[1] != 2 or len(info) != len(scores):
        raise ValueError(f"`{path}` must hold `info` (P, 2) (file name, label) and `tensor` (P,), as ReaL's "
                         f"scores.npz does; got {info.shape} and {scores.shape}")
    names, which = np.unique(info[:, 0], return_inverse=True)
    images = np.array([val_index(name) for name in names])[which]
    return dict(zip(zip(images.tolist(), info[:, 1].astype(np.int64).tolist()), scores.tolist()))


def load_class_confusion(path: str | Path, wnids: Iterable[str]) -> np.ndarray:
    """(K, K) symmetric counts from imagenet-mistakes' ``class_confusion_wnids.json``
    (``[[wnid_a, wnid_b, count], ...]``: how often ViT-3B confused the two classes)."""
    index = {w: i for i, w in enumerate(wnids)}
    counts = np.zeros((len(index), len(index)), dtype=np.int64)
    for row in json.loads(Path(path).read_text()):
        a, b, n = row
        if a not in index or b not in index:
            raise ValueError(f"`{path}`: {a if a not in index else b} is not one of the {len(index)} classes; "
                             "pass the wnids file (class_confusion_wnids.json), not the synset names")
        counts[index[a], index[b]] += int(n)
        if a != b:
            counts[index[b], index[a]] += int(n)
    return counts


@dataclass(frozen=True)
class ImageNetClasses:
    """The 1,000 classes in index order: ``wnids[i]`` and a short ``names[i]`` (first synonym)."""

    wnids: tuple[str, ...]
    names: tuple[str, ...]

    def index(self, wnid: str) -> int:
        try:
            return self.wnids.index(wnid)
        except ValueError:
            raise KeyError(f"wnid {wnid!r} is not one of the {len(self.wnids)} classes") from None


def load_classes(path: str | Path) -> ImageNetClasses:
    """Class list from ``class_info.json`` (list of {cid, wnid, synset}), the Keras
    ``imagenet_class_index.json`` ({"0": [wnid, name]}) or Caffe's ``synset_words.txt``."""
    path = Path(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            rows = [data[str(i)] for i in range(len(data))]
            pairs = [(w, n) for w, n in rows]
        else:
            rows = sorted(data, key=lambda r: r["cid"])
            pairs = [(r["wnid"], r["synset"][0]) for r in rows]
    else:
        pairs = []
        for line in path.read_text().splitlines():
            if line.strip():
                wnid, _, names = line.partition(" ")
                pairs.append((wnid, names.split(",")[0].strip()))
    wnids = tuple(w for w, _ in pairs)
    if list(wnids) != sorted(wnids):
        raise ValueError(f"`{path}`: classes must be in sorted-wnid order (the standard 0..999 index)")
    return ImageNetClasses(wnids=wnids, names=tuple(n for _, n in pairs))


def read_is_a(path: str | Path) -> list[tuple[str, str]]:
    """``wordnet.is_a.txt`` lines ``parent child`` -> (parent, child) edges."""
    edges = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'parent_wnid child_wnid', got {line!r}")
            edges.append((parts[0], parts[1]))
    return edges


def read_words(path: str | Path) -> dict[str, str]:
    """``words.txt`` lines ``wnid<TAB>names`` -> {wnid: names}."""
    out = {}
    for line in Path(path).read_text().splitlines():
        wnid, sep, names = line.partition("\t")
        if sep:
            out[wnid] = names
    return out


def _ancestor_depths(wnid: str, parents: dict[str, list[str]]) -> dict[str, int]:
    """Every ancestor of ``wnid`` (itself included, at 0) with its shortest upward distance (BFS)."""
    dist = {wnid: 0}
    frontier = [wnid]
    while frontier:
        nxt = []
        for node in frontier:
            for parent in parents.get(node, ()):
                if parent not in dist:
                    dist[parent] = dist[node] + 1
                    nxt.append(parent)
        frontier = nxt
    return dist


def _root_depths(nodes: Iterable[str], parents: dict[str, list[str]]) -> dict[str, int]:
    """Depth of each of ``nodes``: the shortest path up to a node without parents (a root).

    Computed from the roots down (breadth first) over the sub-graph above ``nodes``.
    """
    nodes = set(nodes)
    children: dict[str, list[str]] = defaultdict(list)
    for node in nodes:
        for parent in parents.get(node, ()):
            children[parent].append(node)
    frontier = [node for node in nodes if not parents.get(node)]
    depth = dict.fromkeys(frontier, 0)
    while frontier:
        nxt = []
        for node in frontier:
            for child in children.get(node, ()):
                if child not in depth:
                    depth[child] = depth[node] + 1
                    nxt.append(child)
        frontier = nxt
    unrooted = sorted(nodes - depth.keys())
    if unrooted:
        raise ValueError(f"{len(unrooted)} nodes reach no root (a node without parents), e.g. {unrooted[:3]}; "
                         "the is-a edges must form a DAG")
    return depth


class ClassHierarchy:
    """Shortest-path distances between classes through their common ancestors in an is-a DAG.

    ``distance(a, b) = min over common ancestors c of d(a, c) + d(b, c)``, where ``d`` is the
    shortest upward path length. WordNet is a DAG (some nodes have several parents), so the
    minimum runs over all common ancestors, not one tree LCA. Precomputed, (K, K) int16, -1 for
    a pair without a common ancestor: ``distances``, and ``ancestor_depths``, the depth (shortest
    path up to a root) of the closest common ancestor (the deepest one when several tie), which
    tells a confusion inside "dog" from one inside "physical entity" at equal distance.
    ``depths`` (K,): each class's own depth.
    """

    def __init__(self, edges: Iterable[tuple[str, str]], wnids: Iterable[str], *,
                 names: dict[str, str] | None = None):
        self.wnids = tuple(wnids)
        self._names = names or {}
        parents: dict[str, list[str]] = defaultdict(list)
        for parent, child in edges:
            parents[child].append(parent)
        missing = [w for w in self.wnids if w not in parents]
        if missing:
            raise ValueError(f"{len(missing)} classes have no parent in the hierarchy, e.g. {missing[:3]}; "
                             "pass the is-a edges that cover every class")
        self._ancestors = [_ancestor_depths(w, parents) for w in self.wnids]
        self._node_depth = _root_depths({node for anc in self._ancestors for node in anc}, parents)
        self.depths = np.array([self._node_depth[w] for w in self.wnids], dtype=np.int16)
        self.distances, self.ancestor_depths = self._all_distances()

    @classmethod
    def from_files(cls, is_a_path: str | Path, wnids: Iterable[str], *,
                   words_path: str | Path | None = None) -> ClassHierarchy:
        """Build from ``wordnet.is_a.txt`` (and ``words.txt`` for names) for the given classes."""
        names = read_words(words_path) if words_path is not None else None
        return cls(read_is_a(is_a_path), wnids, names=names)

    def _all_distances(self) -> tuple[np.ndarray, np.ndarray]:
        """Min-plus over ancestors: for each ancestor c, pairs below it get d(a,c)+d(b,c) if smaller
        (or equal, when c is deeper), and c's depth as their ancestor depth."""
        k = len(self.wnids)
        below: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for i, anc in enumerate(self._ancestors):
            for node, d in anc.items():
                below[node][0].append(i)
                below[node][1].append(d)
        unreachable = np.iinfo(np.int16).max
        dist = np.full((k, k), unreachable, dtype=np.int16)
        depth = np.full((k, k), -1, dtype=np.int16)
        for node, (members, ups) in below.items():
            idx = np.asarray(members)
            d = np.asarray(ups, dtype=np.int16)
            block = np.ix_(idx, idx)
            via, current, node_depth = d[:, None] + d[None, :], dist[block], self._node_depth[node]
            better = (via < current) | ((via == current) & (node_depth > depth[block]))
            dist[block] = np.where(better, via, current)
            depth[block] = np.where(better, node_depth, depth[block])
        dist[dist == unreachable] = -1
        return dist, depth

    def distance(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        """Distances between class indices ``a`` and ``b`` (broadcast), int16."""
        return self.distances[np.asarray(a), np.asarray(b)]

    def closest_common_ancestor(self, a: int, b: int) -> str | None:
        """A common ancestor on a shortest path between classes ``a`` and ``b`` (ties: the deepest,
        then the smallest wnid); its depth is ``ancestor_depths[a, b]``."""
        anc_a, anc_b = self._ancestors[a], self._ancestors[b]
        common = anc_a.keys() & anc_b.keys()
        if not common:
            return None
        return min(common, key=lambda c: (anc_a[c] + anc_b[c], -self._node_depth[c], c))

    def name(self, wnid: str) -> str:
        """WordNet names of a node (``words.txt``), or the wnid itself when names were not loaded."""
        return self._names.get(wnid, wnid)
