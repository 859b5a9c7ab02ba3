"""Where in a decoder block an activation is read, patched or steered: the site table.

Three components per decoder layer ``i``:

- ``residual``: the output of block ``i`` (the residual stream after it), the place where
  :mod:`harness.steering.hooks` adds steering vectors and extraction reads them;
- ``attention``: the output of block ``i``'s attention submodule (after its output
  projection), the attention's write into the residual stream;
- ``mlp``: the output of block ``i``'s MLP submodule, the MLP's write.

The attention and MLP submodules are found by attribute name: ``self_attn`` and ``mlp``
(Llama, Qwen, Mistral, Gemma, Phi-3, OLMo style) or ``attn`` and ``mlp`` (GPT-2, GPT-J
style). Other blocks (GPT-NeoX's ``attention``, OPT's ``fc1``/``fc2``, Falcon's
``self_attention``) get a one-line error; the residual component works wherever the
decoder layers are found (:mod:`harness.model.layers`). In sandwich-norm blocks (Gemma 2
and 3) the submodule output is read before its post-norm.

One table for ``steer-harness locate`` (which reads and patches every site) and for the
``site`` option of activation steering (which adds at one), so both mean the same place.
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import nn

from harness.core.errors import ModelLoadError

Component = Literal["residual", "attention", "mlp"]
COMPONENTS: tuple[Component, ...] = get_args(Component)

# (attention attribute, MLP attribute) per supported block family.
SUBLAYER_NAMES: tuple[tuple[str, str, str], ...] = (
    ("self_attn", "mlp", "Llama, Qwen, Mistral, Gemma, Phi-3, OLMo style"),
    ("attn", "mlp", "GPT-2, GPT-J style"),
)

# Families known (from their config's model_type) to lack both names, so that a spec can
# be refused at `check`, before any weights are loaded; others are found when loaded.
# Encoders are post-norm (a sublayer's output is taken after its residual add and
# LayerNorm), so an "attention output" site would not be the attention's write: they
# are steered at the residual site only.
WITHOUT_SUBLAYERS: frozenset[str] = frozenset(
    {
        "gpt_neox",
        "opt",
        "falcon",
        "bloom",
        "bert",
        "distilbert",
        "roberta",
        "xlm-roberta",
        "electra",
        "deberta",
        "deberta-v2",
    }
)

RESIDUAL_HINT = "Use the residual site (the block output) for this architecture."


def sublayer_attrs(block: nn.Module, hint: str = RESIDUAL_HINT) -> tuple[str, str]:
    """The (attention, MLP) attribute names of a decoder block, or a one-line error."""
    for attn, mlp, _family in SUBLAYER_NAMES:
        if isinstance(getattr(block, attn, None), nn.Module) and isinstance(
            getattr(block, mlp, None), nn.Module
        ):
            return attn, mlp
    families = "; ".join(f"'{a}' and '{m}' ({f})" for a, m, f in SUBLAYER_NAMES)
    raise ModelLoadError(
        f"cannot find the attention and MLP submodules of {type(block).__name__}: looked for "
        f"{families}. {hint}"
    )


def site_modules(
    layers: nn.ModuleList, component: Component, hint: str = RESIDUAL_HINT
) -> nn.ModuleList:
    """The module per layer whose output (first element if a tuple) is the component.

    For ``residual`` that is ``layers`` itself; otherwise a new ModuleList referring to
    the blocks' submodules (the model is not changed), in layer order, so that the hook
    helpers of :mod:`harness.steering.hooks` index it like the decoder layers."""
    if component == "residual":
        return layers
    attn, mlp = sublayer_attrs(layers[0], hint)
    attr = attn if component == "attention" else mlp
    out = []
    for block in layers:
        mod = getattr(block, attr, None)
        if not isinstance(mod, nn.Module):
            raise ModelLoadError(f"{type(block).__name__} has no '{attr}' submodule")
        out.append(mod)
    return nn.ModuleList(out)
