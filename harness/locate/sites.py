"""Sites: one component of one decoder layer, for locate's tables.

The site table itself (which submodule is a block's attention or MLP output, per
architecture family) lives in :mod:`harness.model.sites`, shared with the ``site`` option
of activation steering, so that locating and steering mean the same place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from harness.config.vectors import layer_label
from harness.core.errors import LocateError
from harness.model import sites as _sites
from harness.model.sites import COMPONENTS, Component

__all__ = ["COMPONENTS", "Component", "Site", "all_sites", "parse_components", "site_modules"]
LOCATE_HINT = "Use --components residual for this architecture."


@dataclass(frozen=True, order=True)
class Site:
    """One component of one decoder layer (layer -1: the embedding output, for a
    classifier's localisation)."""

    component: Component
    layer: int

    @property
    def name(self) -> str:
        return f"{self.component}.{layer_label(self.layer)}"


def parse_components(value: str) -> list[Component]:
    """``"residual,attention"`` -> the components, in the order given, checked."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in COMPONENTS]
    if not names or bad:
        raise LocateError(
            f"--components: unknown component(s) {bad or [value]}; "
            f"allowed: {', '.join(COMPONENTS)} (comma-separated)"
        )
    return list(dict.fromkeys(names))  # type: ignore[arg-type]


def site_modules(layers: nn.ModuleList, component: Component) -> nn.ModuleList:
    """:func:`harness.model.sites.site_modules`, with locate's hint in its error."""
    return _sites.site_modules(layers, component, LOCATE_HINT)


def all_sites(components: Sequence[Component], num_layers: int) -> list[Site]:
    return [Site(c, i) for c in components for i in range(num_layers)]
