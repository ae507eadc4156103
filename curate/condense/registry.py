"""The distillation extension points, importable without torch (for recipe validation and listings).

``DISTILLERS`` maps a method name to a :class:`curate.condense.base.Distiller` subclass and
``DISTILL_PLUGINS`` a plug-in name to a class whose instances hook the synthetic batch
(:meth:`curate.condense.base.Distiller.synthetic`; FYI is :mod:`curate.condense.fyi`). Built-ins
are dotted paths imported on first use; other packages add entries through the
``curate.distillers`` / ``curate.distill_plugins`` entry-point groups.
"""

from __future__ import annotations

from typing import Sequence

from curate.errors import UsageError
from curate.registry import Registry

DISTILLERS: Registry = Registry("distiller", entry_point_group="curate.distillers")
DISTILLERS.register("dc", "curate.condense.gradient_matching:GradientMatching")
DISTILLERS.register("dsa", "curate.condense.gradient_matching:SiameseGradientMatching")
DISTILLERS.register("dcc", "curate.condense.gradient_matching:ContrastiveGradientMatching")
DISTILLERS.register("dm", "curate.condense.distribution_matching:DistributionMatching")
DISTILLERS.register("sre2l", "curate.condense.recover:Recovery")
DISTILLERS.register("cda", "curate.condense.recover:CurriculumRecovery")

DISTILL_PLUGINS: Registry = Registry("distillation plug-in", entry_point_group="curate.distill_plugins")
DISTILL_PLUGINS.register("fyi", "curate.condense.fyi:FlipYourImages")

FYI = "fyi"


def plugin_problems(plugins: Sequence[str], *, fyi: bool | None) -> list[tuple[str, str]]:
    """``(field, message)`` for each unknown or repeated name in ``plugins`` and an ``fyi`` that contradicts them."""
    problems = [(f"plugins[{i}]", DISTILL_PLUGINS.unknown_message(name))
                for i, name in enumerate(plugins) if name not in DISTILL_PLUGINS]
    problems += [(f"plugins[{i}]", f"plug-in '{name}' is listed twice; list each plug-in once")
                 for i, name in enumerate(plugins) if name in plugins[:i]]
    if fyi is False and FYI in plugins:
        problems.append(("fyi", f"`fyi: false` contradicts `plugins` {list(plugins)}; drop `fyi` (it is shorthand "
                                f"for listing '{FYI}' in `plugins`) or remove '{FYI}' from `plugins`"))
    return problems


def plugin_names(plugins: Sequence[str] = (), *, fyi: bool | None = None) -> list[str]:
    """The plug-ins a run uses, in order: ``plugins``, plus ``fyi`` at the end when ``fyi=True`` does not list it.

    ``fyi=True`` is shorthand for ``plugins=["fyi"]``; giving both agreeing is fine, ``fyi=False``
    with 'fyi' in ``plugins`` is a usage error, as are unknown or repeated names.
    """
    if isinstance(plugins, str):
        raise UsageError(f"`plugins` must be a list of names, got the string {plugins!r}; pass [{plugins!r}]")
    names = list(plugins)
    problems = plugin_problems(names, fyi=fyi)
    if problems:
        raise UsageError("; ".join(f"`{field}`: {message}" for field, message in problems))
    return names + [FYI] if fyi and FYI not in names else names
