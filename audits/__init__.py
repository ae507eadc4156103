"""Dataset audits: label issues (confident learning), multi-label accuracy (ReaL, "dough/bagel",
variable top-k), mistake categories, k-NN outliers and class balance, and ImageNet loaders.

The algorithm modules (``label_issues``, ``multilabel``, ``mistakes``, ``mistake_model``, ``skill``,
``outliers``, ``audit``, ``review``) are pure functions on NumPy arrays (``mistake_model`` also reads
its fitted parameters from ``data/mistake_model.json``); ``imagenet`` holds explicit file loaders; the edges
are ``report`` (HTML + PNG), ``fo_review`` (FiftyOne fields and views) and ``steps`` (the recipe
steps `audit` and `audit_apply`, registered through the ``curate.steps`` entry points). Importing
this package is cheap: import the submodule you need, e.g.
``from audits.label_issues import find_label_issues``.
"""
