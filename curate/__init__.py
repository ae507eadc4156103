"""curate: image-dataset curation and synthetic augmentation.

Importing this package is cheap: torch, datasets, fiftyone and faiss load only
when a function that needs them runs.
"""

__version__ = "0.1.0"
