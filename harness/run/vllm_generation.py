"""Generation on the vLLM backend: the same rows, prompts and outputs as :mod:`generation`.

What is the same as the HF path: the prompt each row gets (rendered and tokenised by the
same code, then handed to vLLM as token ids), the decoding settings, how a text ends (cut
at the first end-of-sequence token, decoded by the same tokenizer) and so the
:class:`~harness.run.generation.Output` records. In float32, greedy texts equal the HF
backend's, steered ones too (tests/vllm/).

What differs: sampling. The HF path draws with our counter-based Gumbel sampler; vLLM
draws with its own per-request generator, seeded with the row's stream seed (from
(prompt id, seed) alone, :func:`~harness.run.generation.stream_seed`), so a row's text
does not depend on its batch or on the other rows -- but sampled texts are not the HF
path's texts. The backend therefore enters every content id, and a run's baseline and
conditions always come from one backend (a comparison across backends would measure the
backend, not the intervention).

Steering: a condition's declared edits (``additions``, ``ablations``) become hooks on
vLLM's decoder layers for the engine call (:mod:`harness.model.vllm_hooks`), removed
after it even on error; a ``token_bias`` becomes vLLM's ``logit_bias``; a LoRA adapter
(``lora_adapter``) goes with every request of the call as vLLM's ``LoRARequest``; prompt
transforms are applied when rendering, as on the HF path. Requests steered by hooks carry
a prefix-cache salt from their edits, so vLLM never reuses key/value blocks computed under
other steering.

Several conditions in one call (``conditions_per_batch``, :func:`generate_conditions_vllm`):
additive ones, the baseline, prompt-method and logit-bias conditions go in one engine
call, each request tagged with its condition and the tagged hooks adding its own vector
to its tokens; texts equal one call per condition (greedy and seeded). Where the engine
cannot tell the requests' tokens apart, the call is discarded and each condition generated
alone (the reason logged once).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.config.spec import GenerationSpec
from harness.core.errors import EngineError
from harness.model.chat import build_messages, render
from harness.model.loading import LoadedModel
from harness.model.vllm_hooks import CONDITION, Edit
from harness.run.generation import Output, Row, check_fits, finished_text, stream_seed
from harness.steering.base import BaseMethod, backend_problem
from harness.steering.batched import RowwiseAddition

log = logging.getLogger(__name__)


def hook_edits(method: Any) -> dict[int, list[Edit]]:
    """The layer edits a prepared method declares, as data for the vLLM workers."""
    edits: dict[int, list[Edit]] = {}
    additions = getattr(method, "additions", None)
    for layer, vector in ((additions() if callable(additions) else None) or {}).items():
        edits.setdefault(int(layer), []).append(("add", vector.float().cpu().tolist(), 1.0))
    ablations = getattr(method, "ablations", None)
    for layer, (unit, share) in ((ablations() if callable(ablations) else None) or {}).items():
        edits.setdefault(int(layer), []).append(("ablate", unit.float().cpu().tolist(), share))
    return edits


def _runnable(method: Any) -> None:
    """Refuse, at run time too, a method whose edits the vLLM backend cannot carry out
    (``check`` refuses most of them earlier, from the params)."""
    if isinstance(method, RowwiseAddition):
        raise EngineError("stacked conditions are generated one condition per vLLM call")
    params = getattr(method, "params", None)
    reason = backend_problem(type(method), params, "vllm") if params is not None else None
    if reason is None and type(method).apply is not BaseMethod.apply:
        names = ("additions", "ablations", "lora_adapter")
        declared = [getattr(method, n, lambda: None)() for n in names]
        if all(d is None for d in declared):
            reason = (
                f"method '{type(method).__name__}' declared no additions, ablations or LoRA "
                "adapter once prepared (vLLM runs LoRA adapters only), so the vllm backend "
                "cannot run it; use model.backend = 'hf'"
            )
    if reason is not None:
        raise EngineError(reason)


def shares_a_call(method: Any) -> bool:
    """Whether a (prepared) condition can share a vLLM engine call with others: everything
    it does is per request (a prompt transform, a logit bias, nothing at all) or an addition
    the tagged hooks add per token (:func:`harness.model.vllm_hooks.install_tagged`).
    Ablations and LoRA adapters keep a call of their own."""
    try:
        _runnable(method)
    except EngineError:
        return False  # its own call, which then fails with the reason
    ablations = getattr(method, "ablations", None)
    adapter = getattr(method, "lora_adapter", None)
    return (not callable(ablations) or ablations() is None) and (
        not callable(adapter) or adapter() is None
    )


def sampling_params(
    rows: Sequence[Row],
    gen: GenerationSpec,
    eos: list[int],
    bias: dict[int, float] | None,
    tag: int = 0,
) -> list[Any]:
    """One SamplingParams per row: greedy, or sampled with the row's own seed; ``tag``:
    the row's condition in a shared call (the additions-table row its tokens get)."""
    from vllm import SamplingParams

    out = []
    for r in rows:
        common: dict[str, Any] = {
            "max_tokens": gen.max_new_tokens,
            "stop_token_ids": eos,
            "detokenize": False,  # the harness decodes, with the same tokenizer as HF's
            "logit_bias": bias,
        }
        if tag:
            common["extra_args"] = {CONDITION: tag}
        if gen.sampling:
            common |= {
                "temperature": gen.temperature,
                "top_p": gen.top_p,
                "top_k": gen.top_k,  # 0 disables it in vLLM too
                "seed": stream_seed(r.prompt_id, r.seed),
            }
        else:
            common["temperature"] = 0.0
        out.append(SamplingParams(**common))
    return out


@dataclass
class _Requests:
    """One condition's requests, ready for the engine."""

    rows: Sequence[Row]
    rendered: list[str]
    prompts: list[list[int]]
    bias: dict[int, float] | None
    edits: dict[int, list[Edit]]
    lora: Any


def _requests(lm: LoadedModel, method: Any, rows: Sequence[Row], gen: GenerationSpec) -> _Requests:
    _runnable(method)
    tok = lm.tokenizer
    rendered = [
        render(lm, method.transform_messages(build_messages(r.prompt, lm.spec.system_prompt)))
        for r in rows
    ]
    special = not lm.use_chat_template
    prompts = [tok(text, add_special_tokens=special)["input_ids"] for text in rendered]
    check_fits(lm, rows, [len(p) for p in prompts], gen.max_new_tokens)
    token_bias = getattr(method, "token_bias", None)
    bias = token_bias() if callable(token_bias) else None
    adapter = getattr(method, "lora_adapter", None)
    folder = adapter() if callable(adapter) else None
    # Before any hook: a LoRA adapter may restart the engine (with LoRA support).
    lora = lm.engine.lora_request(folder) if folder is not None else None
    return _Requests(rows, rendered, prompts, bias or None, hook_edits(method), lora)


def cache_salt(edits: dict[int, list[Edit]]) -> str | None:
    """The prefix-cache salt of requests steered by ``edits`` (None: unsteered): vLLM
    reuses cached key/value blocks of equal prompt prefixes, which hold the steered
    stream, so differently steered requests must not share them."""
    if not edits:
        return None
    return hashlib.sha256(repr(sorted(edits.items())).encode()).hexdigest()[:32]


def _outputs(lm: LoadedModel, req: _Requests, results: Sequence[Any]) -> list[Output]:
    eos = lm.engine.eos_ids(lm.tokenizer)
    outputs = []
    for text_in, ids_in, res in zip(req.rendered, req.prompts, results, strict=True):
        text, n_new, finish = finished_text(lm.tokenizer, res.outputs[0].token_ids, eos)
        outputs.append(Output(text_in, text, len(ids_in), n_new, finish))
    return outputs


def _generate_one(lm: LoadedModel, req: _Requests, gen: GenerationSpec) -> list[Output]:
    """One condition's requests in one engine call, its hooks on the whole engine."""
    engine = lm.engine
    params = sampling_params(req.rows, gen, engine.eos_ids(lm.tokenizer), req.bias)
    salts = [cache_salt(req.edits)] * len(req.prompts)
    engine.install(req.edits)
    try:
        results = engine.generate(req.prompts, params, req.lora, salts)
    finally:
        if req.edits:
            engine.remove()
    return _outputs(lm, req, results)


def generate_rows_vllm(
    lm: LoadedModel, method: Any, rows: Sequence[Row], gen: GenerationSpec
) -> list[Output]:
    """Generate ``rows`` under one (prepared) method in one vLLM engine call."""
    if lm.engine is None:
        raise EngineError("generate_rows_vllm needs a model loaded with backend = 'vllm'")
    return _generate_one(lm, _requests(lm, method, rows, gen), gen)


def _tables(reqs: Sequence[_Requests]) -> tuple[dict[int, list[list[float]]], list[int]]:
    """The additions table of each layer (row 0 zero, row k the k-th steering condition's
    vector, or zero where it does not steer that layer) and each condition's tag."""
    tags: list[int] = []
    steering: list[dict[int, list[Edit]]] = []
    for req in reqs:
        tags.append(len(steering) + 1 if req.edits else 0)
        if req.edits:
            steering.append(req.edits)
    width = next(len(v) for edits in steering for e in edits.values() for _, v, _ in e)
    zero = [0.0] * width
    tables: dict[int, list[list[float]]] = {}
    for layer in sorted({i for edits in steering for i in edits}):
        rows = [zero]
        for edits in steering:
            # additions() maps a layer to one vector, added with coefficient 1.
            layer_edits = edits.get(layer, [])
            rows.append(layer_edits[0][1] if layer_edits else zero)
        tables[layer] = rows
    return tables, tags


def _generate_shared(
    lm: LoadedModel, reqs: Sequence[_Requests], gen: GenerationSpec
) -> list[list[Output]] | str:
    """Every condition's requests in one engine call, each request tagged with its
    condition and the tagged hooks adding its vector to its tokens; the outputs per
    condition, or why the call could not be shared (its texts are then discarded)."""
    engine = lm.engine
    eos = engine.eos_ids(lm.tokenizer)
    tables, tags = _tables(reqs) if any(r.edits for r in reqs) else ({}, [0] * len(reqs))
    prompts, params, salts = [], [], []
    for req, tag in zip(reqs, tags, strict=True):
        prompts += req.prompts
        params += sampling_params(req.rows, gen, eos, req.bias, tag)
        salts += [cache_salt(req.edits)] * len(req.prompts)
    if tables:
        problem = engine.install_tagged(tables)
        if problem is not None:
            return problem
    try:
        results = engine.generate(prompts, params, None, salts)
        problems, seen = engine.tagged_report() if tables else ([], set())
    finally:
        if tables:
            engine.remove()
    missing = {t for t in tags if t} - seen
    if problems or missing:
        # Blocks cached in this call hold unsteered keys and values under steered salts.
        engine.reset_prefix_cache()
        return "; ".join(problems) or f"no token of condition tag(s) {sorted(missing)} was steered"
    out, start = [], 0
    for req in reqs:
        out.append(_outputs(lm, req, results[start : start + len(req.prompts)]))
        start += len(req.prompts)
    return out


def generate_conditions_vllm(
    lm: LoadedModel, parts: Sequence[tuple[Any, Sequence[Row]]], gen: GenerationSpec
) -> list[list[Output]]:
    """Generate each (prepared method, rows) part; in one engine call where every method
    :func:`shares_a_call` and the engine can tell the requests' tokens apart, else one call
    per part (the reason logged once). The texts are the same either way (tests/vllm)."""
    engine = lm.engine
    if engine is None:
        raise EngineError("generate_conditions_vllm needs a model loaded with backend = 'vllm'")
    if len(parts) > 1 and all(shares_a_call(m) for m, _ in parts):
        reqs = [_requests(lm, m, rows, gen) for m, rows in parts]
        if engine.tagged_problem is None:
            shared = _generate_shared(lm, reqs, gen)
            if not isinstance(shared, str):
                return shared
            engine.tagged_problem = shared
            log.warning(
                "vLLM: several conditions cannot share an engine call here (%s); "
                "generating one condition per call",
                shared,
            )
        return [_generate_one(lm, req, gen) for req in reqs]
    return [generate_rows_vllm(lm, m, rows, gen) for m, rows in parts]
