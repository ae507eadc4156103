"""The synth extension points, importable without torch (recipes validate names against them at load).

``METHODS`` maps a synth method name to a class with a ``Config`` and ``prepare``/``generate``
(:mod:`synth.methods`); ``GUIDANCE`` maps a guidance name to a
:class:`synth.guidance.ClassifierGuidance` subclass, chosen by ``with.guidance`` of a
``classifier_guidance`` step. Built-ins are dotted paths imported on first use; other packages
add entries through the ``curate.synth_methods`` / ``curate.guidance`` entry-point groups.
"""

from __future__ import annotations

from curate.registry import Registry

METHODS: Registry = Registry("synth method", entry_point_group="curate.synth_methods")
METHODS.register("classifier_guidance", "synth.methods:ClassifierGuidanceMethod")
METHODS.register("ssl_conditioned", "synth.ssl_conditioned:SSLConditionedMethod")
METHODS.register("class_tokens", "synth.class_tokens:ClassTokensMethod")

GUIDANCE: Registry = Registry("guidance method", entry_point_group="curate.guidance")
GUIDANCE.register("noisy_classifier", "synth.guidance:NoisyClassifierGuidance")
GUIDANCE.register("clean_classifier", "synth.guidance:CleanClassifierGuidance")
