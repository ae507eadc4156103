"""FiftyOne adapter: mirror a run's sample table into a persistent dataset, add fields,
saved views and an embeddings plot, read reviewer tags back, and launch the App.

Thin by design: no algorithm lives here. Importing this package does not import
FiftyOne; every function first points FiftyOne at curate's folders and database
(:mod:`curate.fo.database`) and imports it then.
"""

from curate.fo.app import AppHandle, launch_app, open_app
from curate.fo.database import configure, connect
from curate.fo.fields import add_predictions, field_key, read_tags, set_field_values, tags_fingerprint
from curate.fo.mirror import mirror_table
from curate.fo.runs import (
    clean_run,
    dataset_name_for_run,
    delete_run_dataset,
    missing_outputs,
    read_run_record,
    write_run_record,
)
from curate.fo.views import load_view, save_view, select_ids
from curate.fo.visualize import TSNE_MIN_SAMPLES, compute_embeddings_plot

__all__ = [
    "AppHandle", "TSNE_MIN_SAMPLES", "add_predictions", "clean_run", "compute_embeddings_plot", "configure",
    "connect", "dataset_name_for_run", "delete_run_dataset", "field_key", "launch_app", "load_view",
    "mirror_table", "missing_outputs", "open_app", "read_run_record", "read_tags", "save_view", "select_ids",
    "set_field_values", "tags_fingerprint", "write_run_record",
]
