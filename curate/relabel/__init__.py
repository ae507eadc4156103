"""ReLabel: a machine annotator that writes localized multi-label maps, and training on them.

- :mod:`~curate.relabel.annotator`: annotators (:data:`ANNOTATORS`, default
  ``dense_classifier``) as batch functions, and :func:`annotate` into sharded storage;
- :mod:`~curate.relabel.storage`: top-k label maps in safetensors shards + an index;
- :mod:`~curate.relabel.pooling`: LabelPooling (RoIAlign of a map over a crop box, softmax);
- :mod:`~curate.relabel.data`: random-resized crops with pooled targets, and their mixing under
  CutMix/ResizeMix (ReLabel's own by default, or region-exact);
- :mod:`~curate.relabel.maps`: top-k, densify, global multi-labels.

CutMix and ResizeMix live with the training loop, in :mod:`curate.learn.mixing`.
"""

from curate.relabel.annotator import ANNOTATORS, Annotation, DenseClassifier, annotate, create_annotator, dense_logits
from curate.relabel.data import ResizedCrop, ResizedCropData, crop_to_image, region_targets
from curate.relabel.maps import TopKMaps, area_scores, densify, multi_labels, topk_maps
from curate.relabel.pooling import label_targets, pool_dense, pool_labels, pool_weighted, roi_weights
from curate.relabel.storage import LabelMapInfo, LabelMapStore

__all__ = [
    "ANNOTATORS", "Annotation", "DenseClassifier", "LabelMapInfo", "LabelMapStore", "ResizedCrop", "ResizedCropData",
    "TopKMaps", "annotate", "area_scores", "create_annotator", "crop_to_image", "dense_logits", "densify",
    "label_targets", "multi_labels", "pool_dense", "pool_labels", "pool_weighted", "region_targets", "roi_weights",
    "topk_maps",
]
