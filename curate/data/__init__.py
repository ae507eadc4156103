"""Data: the source registry, the sample table and image decoding.

``datasets``, PIL and pyarrow load only when a table is built or read, so importing
this package (e.g. to validate a recipe's source config) stays cheap.
"""

from curate.data.images import decode_images, iter_image_batches
from curate.data.sources import SOURCES, load_source, source_config_class, source_fingerprint
from curate.data.table import make_table, table_features, validate_table

__all__ = [
    "SOURCES",
    "decode_images",
    "iter_image_batches",
    "load_source",
    "make_table",
    "source_config_class",
    "source_fingerprint",
    "table_features",
    "validate_table",
]
