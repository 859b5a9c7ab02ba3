"""Steering hooks inside vLLM's model: functions that run in vLLM's worker processes.

vLLM runs its model in other processes (the engine core, one worker per tensor-parallel
rank), so the harness cannot hold its layers. It sends functions there through
``LLM.apply_model``, which calls ``fn(model)`` on every worker and returns the results.
Functions sent that way must be importable by name in the worker (module-level, no
closures over the driver's state), so every edit travels as plain data (lists of floats)
bound with :func:`functools.partial`.

Where the vector goes. vLLM's decoder layers of the Llama family fuse the residual add
into the next RMSNorm: a layer returns ``(hidden, residual)`` and the residual stream
after it -- what an HF layer returns -- is their sum. So "add v to the layer's output"
must add v to the sum once (adding it to both would add 2v). The hook computes the edited
stream ``(residual + hidden) + v`` (ablation: the sum less its component along u) and
returns it whole as the residual with ``hidden`` zero, so the next layer's fused add
reproduces HF's float sum bit for bit instead of ``(hidden + v) + residual``. The
embedding output (index -1) is the ``hidden_states`` argument of layer 0, edited by a
forward pre-hook, as on the HF path. Every token of every request is edited (positions
"all"): the hook sees vLLM's flattened batch, not rows.

Several conditions in one engine call (:func:`install_tagged`): each request carries its
condition's tag in ``SamplingParams.extra_args``, and one hook per layer adds row ``tag``
of a table of vectors (row 0 zero: the baseline, a prompt-method condition) to each token.
Which request a token of the flattened batch belongs to comes from vLLM V1's model runner
(``input_batch.req_ids`` in batch order, ``query_start_loc`` their token boundaries),
checked against the forward context's attention metadata once per forward pass
(:func:`token_tags`). Anything unexpected there (another vLLM version, another model
runner, micro-batches) is recorded and the token left unsteered; the driver then discards
the call and generates one condition per call (``harness.run.vllm_generation``).

The handles live in :data:`_HANDLES` in the worker; :func:`remove_hooks` removes them and
:func:`hook_count` lets the driver check that none is left (the vLLM side of
:mod:`harness.steering.restore`). Eager mode only: a captured CUDA graph or a compiled
graph would not run Python hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from harness.model.layers import decoder_layers

EMBEDDING = -1
"""The embedding output, as in :data:`harness.config.vectors.EMBEDDING`."""

_HANDLES: list[RemovableHandle] = []

Edit = tuple[str, list[float], float]
"""(kind, vector, coefficient): ``("add", v, c)`` adds c*v; ``("ablate", u, c)`` removes
c times the stream's component along u (a unit vector)."""


class _Edits:
    """One layer's edits, their vectors made into tensors once per device and dtype."""

    def __init__(self, edits: Sequence[Edit]):
        self.edits = list(edits)
        self._tensors: dict[tuple[Any, Any], list[torch.Tensor]] = {}

    def apply(self, stream: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target`` plus the change every edit makes to the residual ``stream``."""
        key = (stream.device, stream.dtype)
        if key not in self._tensors:
            self._tensors[key] = [
                torch.tensor(v, dtype=stream.dtype, device=stream.device) for _, v, _ in self.edits
            ]
        out = target
        for (kind, _, coefficient), v in zip(self.edits, self._tensors[key], strict=True):
            if kind == "add":
                out = out + coefficient * v
            else:
                out = out - coefficient * ((stream @ v)[..., None] * v)
        return out


class _Applier(Protocol):
    def apply(self, stream: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None: ...


def _post_hook(layer_edits: _Applier) -> Any:
    def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
        if isinstance(output, tuple) and len(output) == 2 and output[1] is not None:
            hidden, residual = output
            # The whole edited stream goes into the residual and hidden becomes 0: the next
            # fused add-norm then sees exactly (residual + hidden) + delta, the same sum in
            # the same order as HF's layer output plus its hook's edit.
            stream = residual + hidden
            edited = layer_edits.apply(stream, stream)
            return None if edited is None else (torch.zeros_like(hidden), edited)
        first = output[0] if isinstance(output, tuple) else output
        edited = layer_edits.apply(first, first)
        if edited is None:
            return None
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    return hook


def _pre_hook(layer_edits: _Applier) -> Any:
    """Edit layer 0's ``hidden_states`` input (the embedding output; its residual is None)."""

    def hook(_module: nn.Module, args: Any, kwargs: Any) -> Any:
        if len(args) >= 2:
            hidden = args[1]
            edited = layer_edits.apply(hidden, hidden)
            return None if edited is None else ((args[0], edited, *args[2:]), kwargs)
        hidden = kwargs["hidden_states"]
        edited = layer_edits.apply(hidden, hidden)
        return None if edited is None else (args, {**kwargs, "hidden_states": edited})

    return hook


def _register(layers: Any, index: int, applier: _Applier) -> None:
    if index == EMBEDDING:
        handle = layers[0].register_forward_pre_hook(_pre_hook(applier), with_kwargs=True)
    else:
        handle = layers[index].register_forward_hook(_post_hook(applier))
    _HANDLES.append(handle)


def install_hooks(edits: dict[int, list[Edit]], model: nn.Module) -> int:
    """Hook ``edits[layer]`` on this worker's model (layer -1: the embedding output);
    returns the number of hooks this worker now holds. Called by ``apply_model``."""
    layers = decoder_layers(model)
    for index, layer_edits in sorted(edits.items()):
        _register(layers, index, _Edits(layer_edits))
    return len(_HANDLES)


# --- several conditions in one engine call: each token gets its own request's vector ---

CONDITION = "steer_harness_condition"
"""The key of a request's condition tag in its ``SamplingParams.extra_args``: the row of
the additions table its tokens get (0 or absent: none, as for the baseline)."""

_TAGS = "steer_harness_tags"
"""Where one forward pass's per-token tags are kept (its ForwardContext's
``additional_kwargs``), so they are worked out once per step, not once per layer."""


class _Tagging:
    """This worker's model runner and what the tagged hooks met during an engine call."""

    def __init__(self) -> None:
        self.runner: Any = None
        self.problems: list[str] = []
        self.seen: set[int] = set()


_TAGGING = _Tagging()


def runner_problem(runner: Any) -> str | None:
    """Why this model runner does not expose what the tagged hooks read (vLLM V1's
    ``GPUModelRunner`` and its CPU subclass do: ``input_batch.req_ids``/``num_reqs``,
    ``requests[id].sampling_params``, the host copy ``query_start_loc.np``), else None."""
    batch = getattr(runner, "input_batch", None)
    if runner is None or batch is None:
        return f"the worker's model runner ({type(runner).__name__}) has no input_batch"
    if not (hasattr(batch, "req_ids") and hasattr(batch, "num_reqs")):
        return f"{type(batch).__name__} has no req_ids/num_reqs"
    if not isinstance(getattr(runner, "requests", None), dict):
        return f"{type(runner).__name__} has no requests dict"
    if getattr(getattr(runner, "query_start_loc", None), "np", None) is None:
        return f"{type(runner).__name__} has no host query_start_loc"
    try:
        from vllm.forward_context import get_forward_context  # noqa: F401
    except ImportError:
        return "vllm.forward_context.get_forward_context is missing"
    return None


def _tags_now(n_tokens: int) -> Any:
    """:func:`token_tags` of this forward pass (worked out once, kept in its context)."""
    from vllm.forward_context import get_forward_context, is_forward_context_available

    if not is_forward_context_available():
        return "a decoder layer ran outside a forward context"
    ctx = get_forward_context()
    if _TAGS not in ctx.additional_kwargs:
        tags = token_tags(_TAGGING.runner, ctx.attn_metadata, n_tokens)
        if isinstance(tags, tuple):
            _TAGGING.seen.update(tags[1])
            tags = tags[0]
        ctx.additional_kwargs[_TAGS] = tags
    return ctx.additional_kwargs[_TAGS]


def token_tags(runner: Any, metadata: Any, n_tokens: int) -> Any:
    """The tag of each of a forward pass's ``n_tokens`` flattened tokens, from the runner's
    batch (request ``i`` of ``input_batch.req_ids`` has the tokens
    ``query_start_loc[i]:query_start_loc[i + 1]``; its tag is in its sampling params),
    checked against the attention metadata of the pass: ``(tags, tags seen)`` with tags a
    CPU int64 tensor (padding tokens 0); None for a pass without requests (a dummy run);
    or a string saying what is not as expected -- then nothing may be steered."""
    import numpy as np

    batch = runner.input_batch
    num_reqs = int(batch.num_reqs)
    if num_reqs == 0 or not metadata:
        return None
    if not isinstance(metadata, dict):
        return f"attention metadata is a {type(metadata).__name__}, not one dict (micro-batches?)"
    host = np.asarray(runner.query_start_loc.np[: num_reqs + 1], dtype=np.int64)
    counts = np.diff(host)
    if len(host) != num_reqs + 1 or host[0] != 0 or (counts < 0).any() or host[-1] > n_tokens:
        return f"query_start_loc {host.tolist()} does not split {n_tokens} tokens"
    total = int(host[-1])
    with_locs = [m for m in metadata.values() if hasattr(m, "query_start_loc")]
    if not with_locs:
        return "no attention metadata has query_start_loc"
    for m in with_locs:
        locs = m.query_start_loc
        if not isinstance(locs, torch.Tensor) or locs.dim() != 1 or locs.numel() < num_reqs + 1:
            return f"{type(m).__name__}.query_start_loc is not a vector of {num_reqs + 1}"
        if locs.device.type == "cpu" and locs[: num_reqs + 1].tolist() != host.tolist():
            return f"{type(m).__name__}.query_start_loc differs from the runner's"
        actual = getattr(m, "num_actual_tokens", total)
        if isinstance(actual, int) and actual != total:
            return f"{type(m).__name__}.num_actual_tokens {actual} != {total} scheduled"
    req_ids = list(batch.req_ids)
    if len(req_ids) < num_reqs:
        return f"input_batch has {len(req_ids)} request ids for {num_reqs} requests"
    req_tags = []
    for req_id in req_ids[:num_reqs]:
        state = runner.requests.get(req_id)
        params = getattr(state, "sampling_params", None)
        if params is None:
            return f"request {req_id!r} of the batch has no sampling params in the runner"
        req_tags.append(int((getattr(params, "extra_args", None) or {}).get(CONDITION, 0)))
    per_token = np.zeros(n_tokens, dtype=np.int64)
    per_token[:total] = np.repeat(np.asarray(req_tags, dtype=np.int64), counts)
    seen = {t for t, c in zip(req_tags, counts.tolist(), strict=True) if c > 0}
    return torch.from_numpy(per_token), seen


def _tags_on(device: torch.device, n_tokens: int) -> Any:
    """:func:`_tags_now` on ``device`` (copied there once per forward pass)."""
    tags = _tags_now(n_tokens)
    if not isinstance(tags, torch.Tensor) or device.type == "cpu":
        return tags
    from vllm.forward_context import get_forward_context

    extra = get_forward_context().additional_kwargs
    key = f"{_TAGS}:{device}"
    if key not in extra:
        extra[key] = tags.to(device)
    return extra[key]


class _TaggedAdd:
    """One layer's additions table: row k is added to the tokens of requests tagged k
    (row 0 is zero); made into a tensor once per device and dtype."""

    def __init__(self, rows: list[list[float]]):
        self.rows = rows
        self._tables: dict[tuple[Any, Any], torch.Tensor] = {}

    def apply(self, stream: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        if stream.dim() != 2:
            problem: str | None = f"a layer's stream has shape {tuple(stream.shape)}, not 2-D"
            tags = None
        else:
            tags = _tags_on(stream.device, stream.shape[0])
            problem = tags if isinstance(tags, str) else None
        if problem is not None:
            if problem not in _TAGGING.problems:
                _TAGGING.problems.append(problem)
            return None  # left unsteered: the driver discards this call's texts
        if tags is None:
            return None
        key = (stream.device, stream.dtype)
        if key not in self._tables:
            self._tables[key] = torch.tensor(self.rows, dtype=stream.dtype, device=stream.device)
        return target + self._tables[key][tags]


def install_tagged(worker: Any, tables: dict[int, list[list[float]]]) -> str | None:
    """Hook the additions ``tables[layer]`` (one row per tag, row 0 zero) on this worker's
    model; None, or why this worker cannot tell tokens apart (then nothing is hooked).
    Called by ``collective_rpc``, which passes the worker: the hooks need its runner."""
    runner = getattr(worker, "model_runner", None)
    problem = runner_problem(runner)
    if problem is not None:
        return problem
    _TAGGING.runner = runner
    _TAGGING.problems.clear()
    _TAGGING.seen.clear()
    layers = decoder_layers(worker.get_model())
    for index, rows in sorted(tables.items()):
        _register(layers, index, _TaggedAdd(rows))
    return None


def tagged_report(worker: Any) -> tuple[list[str], list[int]]:
    """What the tagged hooks met on this worker since :func:`install_tagged`: the
    problems (a batch they could not split) and the tags whose tokens they saw."""
    return list(_TAGGING.problems), sorted(_TAGGING.seen)


def remove_hooks(model: nn.Module) -> int:
    """Remove every hook :func:`install_hooks` put on this worker; the number removed."""
    n = len(_HANDLES)
    while _HANDLES:
        _HANDLES.pop().remove()
    return n


def hook_count(model: nn.Module) -> int:
    """Forward hooks and pre-hooks left on this worker's decoder layers (0 when clean)."""
    return sum(
        len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in decoder_layers(model)
    )


def layer_count(model: nn.Module) -> int:
    """The decoder layers vLLM built (a check that the harness finds them)."""
    return len(decoder_layers(model))
