"""Export a run's data as a Hugging Face dataset: DatasetDict, Parquet shards, dataset card, Hub push.

Importing this package does not import ``datasets`` or ``huggingface_hub``.
"""

from curate.export.card import RunFacts, card_text, run_facts, size_category
from curate.export.dataset import build_dataset_dict, shard_files, write_export
from curate.export.hub import push_folder

__all__ = ["RunFacts", "build_dataset_dict", "card_text", "push_folder", "run_facts",
           "shard_files", "size_category", "write_export"]
