"""Sites: where in a decoder block an activation is read, patched or steered.

Three components per decoder layer ``i``:

- ``residual``: the output of block ``i`` (the residual stream after it), the place where
  :mod:`harness.steering.hooks` adds steering vectors and :func:`hidden_states` reads;
- ``attention``: the output of block ``i``'s attention submodule (after its output
  projection), the attention's write into the residual stream;
- ``mlp``: the output of block ``i``'s MLP submodule, the MLP's write.

The attention and MLP submodules are found by attribute name: ``self_attn`` and ``mlp``
(Llama, Qwen, Mistral, Gemma, Phi-3, OLMo style) or ``attn`` and ``mlp`` (GPT-2, GPT-J
style). Other blocks (GPT-NeoX's ``attention``, OPT's ``fc1``/``fc2``, Falcon's
``self_attention``) get a one-line error; the residual component works wherever the
decoder layers are found (:mod:`harness.model.layers`). In sandwich-norm blocks (Gemma 2
and 3) the submodule output is read before its post-norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from torch import nn

from harness.core.errors import LocateError, ModelLoadError

Component = Literal["residual", "attention", "mlp"]
COMPONENTS: tuple[Component, ...] = get_args(Component)

# (attention attribute, MLP attribute) per supported block family.
SUBLAYER_NAMES: tuple[tuple[str, str, str], ...] = (
    ("self_attn", "mlp", "Llama, Qwen, Mistral, Gemma, Phi-3, OLMo style"),
    ("attn", "mlp", "GPT-2, GPT-J style"),
)


@dataclass(frozen=True, order=True)
class Site:
    """One component of one decoder layer."""

    component: Component
    layer: int

    @property
    def name(self) -> str:
        return f"{self.component}.{self.layer}"


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


def _sublayer_attrs(block: nn.Module) -> tuple[str, str]:
    for attn, mlp, _family in SUBLAYER_NAMES:
        if isinstance(getattr(block, attn, None), nn.Module) and isinstance(
            getattr(block, mlp, None), nn.Module
        ):
            return attn, mlp
    families = "; ".join(f"'{a}' and '{m}' ({f})" for a, m, f in SUBLAYER_NAMES)
    raise ModelLoadError(
        f"cannot find the attention and MLP submodules of {type(block).__name__}: looked for "
        f"{families}. Use --components residual for this architecture."
    )


def site_modules(layers: nn.ModuleList, component: Component) -> nn.ModuleList:
    """The module per layer whose output (first element if a tuple) is the component.

    For ``residual`` that is ``layers`` itself; otherwise a new ModuleList referring to
    the blocks' submodules (the model is not changed), in layer order, so that the hook
    helpers of :mod:`harness.steering.hooks` index it like the decoder layers."""
    if component == "residual":
        return layers
    attn, mlp = _sublayer_attrs(layers[0])
    attr = attn if component == "attention" else mlp
    out = []
    for block in layers:
        mod = getattr(block, attr, None)
        if not isinstance(mod, nn.Module):
            raise ModelLoadError(f"{type(block).__name__} has no '{attr}' submodule")
        out.append(mod)
    return nn.ModuleList(out)


def all_sites(components: Sequence[Component], num_layers: int) -> list[Site]:
    return [Site(c, i) for c in components for i in range(num_layers)]
