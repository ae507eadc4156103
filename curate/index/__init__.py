"""Similarity search and duplicates: FAISS indexes with sample ids, k-NN graphs, duplicate groups.

Importing this package does not import FAISS; the functions that need it do.
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
    near_duplicate_pairs,
    pixel_hashes,
    representatives,
)
from curate.index.faiss_index import AUTO_EXACT_MAX, SimilarityIndex, build_index, load_index, sidecar_path
from curate.index.knn import knn_graph

__all__ = [
    "AUTO_EXACT_MAX",
    "DuplicateGroups",
    "Pairs",
    "SimilarityIndex",
    "build_index",
    "connected_components",
    "cross_split_pairs",
    "file_hashes",
    "find_exact_duplicates",
    "find_near_duplicates",
    "group_exact",
    "knn_graph",
    "load_index",
    "near_duplicate_pairs",
    "pixel_hashes",
    "representatives",
    "sidecar_path",
]
