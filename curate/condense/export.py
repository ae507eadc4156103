"""The distilled set as a new version of the sample table.

The new version holds the distilled rows (ids ``distilled:<step>:<n>``, ``set:
distilled``, split ``train``, uint8 images stored as lossless PNG of the clipped floats)
and, unchanged, the input's rows of every other split (e.g. ``test``), so a later step
trains on the distilled set and scores on the real test images. The real training rows
that were condensed are not carried over. Provenance columns (``method``, ``ipc``, ``fyi``,
``iterations``, ``seed``) are filled on distilled rows and null on real ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from curate.condense.synthetic_set import SyntheticSet

if TYPE_CHECKING:  # pragma: no cover
    import datasets

DISTILLED_SPLIT = "train"


def provenance_features() -> "datasets.Features":
    import datasets

    return datasets.Features({"method": datasets.Value("string"), "ipc": datasets.Value("int32"),
                              "fyi": datasets.Value("bool"), "iterations": datasets.Value("int32"),
                              "seed": datasets.Value("int64")})


def distilled_table(synthetic: SyntheticSet, table: "datasets.Dataset", *, step_id: str,
                    replaces: str = DISTILLED_SPLIT) -> "datasets.Dataset":
    """A new table version: the distilled rows, then ``table``'s rows outside ``replaces`` and ``train``."""
    import datasets
    import pyarrow as pa

    from curate.data import make_table, validate_table

    names = list(table.features["label"].names)
    n = len(synthetic)
    distilled = make_table(ids=[f"distilled:{step_id}:{i}" for i in range(n)], images=synthetic.to_uint8(),
                           labels=synthetic.labels.numpy(), class_names=names, splits=DISTILLED_SPLIT,
                           set_="distilled")
    splits = np.asarray(table["split"])
    kept = table.select(np.flatnonzero(~np.isin(splits, [replaces, DISTILLED_SPLIT])))
    extra = provenance_features()
    features = datasets.Features({**kept.features, **{k: v for k, v in extra.items() if k not in kept.features}})
    p = synthetic.provenance
    values = {"method": p.get("method"), "ipc": p.get("ipc"), "fyi": p.get("fyi"), "iterations": p.get("iterations"),
              "seed": p.get("seed")}
    schema = features.arrow_schema

    def aligned(arrow: pa.Table, fill: dict) -> pa.Table:
        columns = []
        for field in schema:
            if field.name in arrow.column_names:
                columns.append(arrow.column(field.name).cast(field.type))
            elif field.name in fill:
                columns.append(pa.array([fill[field.name]] * len(arrow), type=field.type))
            else:
                columns.append(pa.nulls(len(arrow), type=field.type))
        return pa.Table.from_arrays(columns, schema=schema)

    kept_rows = kept.with_format("arrow")[:]  # honours the selection, without a progress bar
    merged = pa.concat_tables([aligned(distilled.data.table, values), aligned(kept_rows, {})])
    out = datasets.Dataset(datasets.table.InMemoryTable(merged), info=datasets.DatasetInfo(features=features))
    validate_table(out, where=f"condense step '{step_id}'")
    return out
