"""Dataset audits: label issues (confident learning), multi-label accuracy (ReaL, "dough/bagel",
variable top-k), mistake categories, k-NN outliers and class balance, and ImageNet loaders.

The modules here are pure functions on NumPy arrays (no torch, FiftyOne or file-system access
except the explicit loaders in :mod:`audits.imagenet`), so importing this package is cheap.
Import the submodule you need, e.g. ``from audits.label_issues import find_label_issues``.
"""
