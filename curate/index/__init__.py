"""Similarity search and duplicates: FAISS indexes with sample ids, k-NN graphs, duplicate groups.

Index kinds (flat, ivf, ivfpq, hnsw, and plug-ins) live in the ``INDEX_KINDS`` registry;
approximate ones calibrate their query-time knob to a recall target when built.

Importing this package does not import FAISS; the functions that need it do. The FiftyOne
Brain backend (:mod:`curate.index.fiftyone_backend`, which imports FiftyOne) loads only when
``FaissSimilarityConfig`` is first asked for.
"""

from curate.index.duplicates import (
    DuplicateGroups,
    Pairs,
    connected_components,
    cross_split_pairs,
    file_hashes,
    find_exact_duplicates,
    find_near_duplicates,
    group_exact,
    group_members,
    near_duplicate_pairs,
    pixel_hashes,
    representatives,
)
from curate.index.calibrate import Calibration
from curate.index.faiss_index import DEFAULT_RECALL, SimilarityIndex, build_index, sidecar_path
from curate.index.saved import load_index
from curate.index.kinds import AUTO_EXACT_MAX, INDEX_KINDS, IndexKind
from curate.index.knn import knn_graph

__all__ = [
    "AUTO_EXACT_MAX",
    "Calibration",
    "DEFAULT_RECALL",
    "DuplicateGroups",
    "FaissSimilarityConfig",
    "INDEX_KINDS",
    "IndexKind",
    "Pairs",
    "SimilarityIndex",
    "build_index",
    "connected_components",
    "cross_split_pairs",
    "file_hashes",
    "find_exact_duplicates",
    "find_near_duplicates",
    "group_exact",
    "group_members",
    "knn_graph",
    "load_index",
    "near_duplicate_pairs",
    "pixel_hashes",
    "representatives",
    "sidecar_path",
]


def __getattr__(name: str):
    if name == "FaissSimilarityConfig":
        from curate.index.fiftyone_backend import FaissSimilarityConfig

        return FaissSimilarityConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
