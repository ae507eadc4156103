"""The distilled set as a new version of the sample table.

The new version holds, unchanged, the input's rows of every split other than the condensed one
(e.g. ``test``), then the distilled rows (ids ``distilled:<step>:<n>``, ``set: distilled``, split
``train``, uint8 images stored as lossless PNG of the clipped floats), so a later step trains on
the distilled set and scores on the real test images. The real training rows that were condensed
are not carried over. Provenance (:data:`curate.data.table.PROVENANCE`) is filled on distilled rows
and null on real ones: the method, its settings (ipc, iterations, init, plug-ins, ...), the step
and the seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from curate.condense.synthetic_set import SyntheticSet

if TYPE_CHECKING:  # pragma: no cover
    import datasets

DISTILLED_SPLIT = "train"


def distilled_table(synthetic: SyntheticSet, table: "datasets.Dataset", *, step_id: str,
                    replaces: str = DISTILLED_SPLIT) -> "datasets.Dataset":
    """A new table version: ``table``'s rows outside ``replaces`` and ``train``, then the distilled rows."""
    from curate.data.table import generated_rows, new_table_version

    names = list(table.features["label"].names)
    p = dict(synthetic.provenance)
    distilled = generated_rows(
        ids=[f"distilled:{step_id}:{i}" for i in range(len(synthetic))], images=synthetic.to_uint8(),
        labels=synthetic.labels.numpy(), class_names=names, split=DISTILLED_SPLIT, set_="distilled",
        method=str(p.pop("method")), seeds=int(p.pop("seed")), parameters=p, source_step=step_id)
    splits = np.asarray(table["split"])
    kept = np.flatnonzero(~np.isin(splits, [replaces, DISTILLED_SPLIT]))
    return new_table_version(table, keep=kept, add=distilled, where=f"condense step '{step_id}'")
