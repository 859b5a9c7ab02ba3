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
transforms are applied when rendering, as on the HF path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.config.spec import GenerationSpec
from harness.core.errors import EngineError
from harness.model.chat import build_messages, render
from harness.model.loading import LoadedModel
from harness.model.vllm_hooks import Edit
from harness.run.generation import Output, Row, check_fits, stream_seed
from harness.steering.base import BaseMethod, backend_problem
from harness.steering.batched import RowwiseAddition


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


def sampling_params(
    rows: Sequence[Row], gen: GenerationSpec, eos: list[int], bias: dict[int, float] | None
) -> list[Any]:
    """One SamplingParams per row: greedy, or sampled with the row's own seed."""
    from vllm import SamplingParams

    out = []
    for r in rows:
        common: dict[str, Any] = {
            "max_tokens": gen.max_new_tokens,
            "stop_token_ids": eos,
            "detokenize": False,  # the harness decodes, with the same tokenizer as HF's
            "logit_bias": bias,
        }
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


def generate_rows_vllm(
    lm: LoadedModel, method: Any, rows: Sequence[Row], gen: GenerationSpec
) -> list[Output]:
    """Generate ``rows`` under one (prepared) method in one vLLM engine call."""
    engine = lm.engine
    if engine is None:
        raise EngineError("generate_rows_vllm needs a model loaded with backend = 'vllm'")
    _runnable(method)
    tok = lm.tokenizer
    rendered = [
        render(lm, method.transform_messages(build_messages(r.prompt, lm.spec.system_prompt)))
        for r in rows
    ]
    special = not lm.use_chat_template
    prompts = [tok(text, add_special_tokens=special)["input_ids"] for text in rendered]
    check_fits(lm, rows, [len(p) for p in prompts], gen.max_new_tokens)
    eos = engine.eos_ids(tok)
    token_bias = getattr(method, "token_bias", None)
    bias = token_bias() if callable(token_bias) else None
    params = sampling_params(rows, gen, eos, bias or None)
    edits = hook_edits(method)
    adapter = getattr(method, "lora_adapter", None)
    folder = adapter() if callable(adapter) else None
    # Before the hooks: a LoRA adapter may restart the engine (with LoRA support).
    lora = engine.lora_request(folder) if folder is not None else None
    engine.install(edits)
    try:
        results = engine.generate(prompts, params, lora)
    finally:
        if edits:
            engine.remove()
    outputs = []
    for text_in, ids_in, res in zip(rendered, prompts, results, strict=True):
        ids = list(res.outputs[0].token_ids)
        finish = "length"
        for j, t in enumerate(ids):
            if t in eos:
                ids = ids[:j]
                finish = "eos"
                break
        text = tok.decode(ids, skip_special_tokens=True).strip()
        outputs.append(Output(text_in, text, len(ids_in), len(ids), finish))
    return outputs
