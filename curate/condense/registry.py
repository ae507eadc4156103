"""The distillation extension points, importable without torch (for recipe validation and listings).

``DISTILLERS`` maps a method name to a :class:`curate.condense.base.Distiller` subclass and
``DISTILL_PLUGINS`` a plug-in name to a class whose instances hook the synthetic batch
(:meth:`curate.condense.base.Distiller.synthetic`; FYI is :mod:`curate.condense.fyi`). Built-ins
are dotted paths imported on first use; other packages add entries through the
``curate.distillers`` / ``curate.distill_plugins`` entry-point groups.
"""

from __future__ import annotations

from curate.registry import Registry

DISTILLERS: Registry = Registry("distiller", entry_point_group="curate.distillers")
DISTILLERS.register("dc", "curate.condense.gradient_matching:GradientMatching")
DISTILLERS.register("dsa", "curate.condense.gradient_matching:SiameseGradientMatching")
DISTILLERS.register("dcc", "curate.condense.gradient_matching:ContrastiveGradientMatching")
DISTILLERS.register("dm", "curate.condense.distribution_matching:DistributionMatching")

DISTILL_PLUGINS: Registry = Registry("distillation plug-in", entry_point_group="curate.distill_plugins")
DISTILL_PLUGINS.register("fyi", "curate.condense.fyi:FlipYourImages")
