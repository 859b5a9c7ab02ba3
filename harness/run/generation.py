"""Batched, seeded generation: one code path for the baseline and every steering method.

Randomness. Sampling is done by the Gumbel-max trick inside a logits processor
(:class:`harness.run.sampler.CounterGumbelSampler`): each row's noise is a counter-based
function of its stream seed, derived from (prompt id, seed) alone, the step and the token,
computed on the model's device for the whole batch at once. Each row draws the same noise
at every step whatever the condition, the batch it sits in, or its position in that
batch; the model then decodes greedily over the perturbed logits. So a steered text
differs from its baseline twin only through the intervention, and a rerun reproduces the
same texts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.config.spec import GenerationSpec
from harness.core.errors import PromptTooLongError
from harness.model.chat import build_messages, render
from harness.model.loading import LoadedModel
from harness.run.sampler import CounterGumbelSampler
from harness.steering.base import BatchInfo, SteeringMethod


def stream_seed(prompt_id: str, seed: int) -> int:
    """The random stream of a (prompt, seed): independent of condition and batch."""
    digest = hashlib.sha256(f"{prompt_id}\x00{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class Row:
    prompt_id: str
    prompt: str
    seed: int


@dataclass(frozen=True)
class Output:
    rendered_prompt: str
    text: str
    n_prompt_tokens: int
    n_new_tokens: int
    finish: str


@torch.no_grad()
def generate_rows(
    lm: LoadedModel,
    method: SteeringMethod,
    rows: Sequence[Row],
    gen: GenerationSpec,
) -> list[Output]:
    """Generate one batch of rows under one steering method (``none`` for the baseline)."""
    from transformers import GenerationConfig, LogitsProcessorList

    tok = lm.tokenizer
    rendered = [
        render(lm, method.transform_messages(build_messages(r.prompt, lm.spec.system_prompt)))
        for r in rows
    ]
    enc = tok(
        rendered, return_tensors="pt", padding=True, add_special_tokens=not lm.use_chat_template
    )
    enc = {k: v.to(lm.device) for k, v in enc.items()}
    prompt_length = int(enc["input_ids"].shape[1])
    check_fits(lm, rows, enc["attention_mask"].sum(dim=1).tolist(), gen.max_new_tokens)
    eos = _eos_ids(lm)
    config = GenerationConfig(
        max_new_tokens=gen.max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=tok.pad_token_id,
        eos_token_id=eos,
    )
    batch = BatchInfo(prompt_length, [r.prompt_id for r in rows], [r.seed for r in rows])
    processors: Any = LogitsProcessorList()
    edit_logits = getattr(method, "logits_processor", None)
    if edit_logits is not None and (proc := edit_logits(lm, batch)) is not None:
        processors.append(proc)  # the method's edit comes before the sampling noise
    if gen.sampling:
        seeds = [stream_seed(r.prompt_id, r.seed) for r in rows]
        processors.append(CounterGumbelSampler(seeds, gen.temperature, gen.top_p, gen.top_k))
    with method.apply(lm, batch):
        out = lm.model.generate(**enc, generation_config=config, logits_processor=processors)
    new = out[:, prompt_length:]
    outputs = []
    for i in range(len(rows)):
        text, n_new, finish = finished_text(tok, new[i].tolist(), eos)
        n_prompt = int(enc["attention_mask"][i].sum())
        outputs.append(Output(rendered[i], text, n_prompt, n_new, finish))
    return outputs


def finished_text(tok: Any, ids: Sequence[int], eos: Sequence[int]) -> tuple[str, int, str]:
    """A row's text from its new token ids: cut at the first end-of-sequence id (the
    finish is then ``eos``, else ``length``), decoded without special tokens and stripped;
    with the number of new tokens kept. The HF and vLLM backends both end texts here."""
    kept = list(ids)
    finish = "length"
    for j, t in enumerate(kept):
        if t in eos:
            kept = kept[:j]
            finish = "eos"
            break
    return tok.decode(kept, skip_special_tokens=True).strip(), len(kept), finish


def check_fits(
    lm: LoadedModel, rows: Sequence[Row], prompt_tokens: Sequence[int], max_new_tokens: int
) -> None:
    """Refuse a batch whose longest prompt plus ``max_new_tokens`` exceeds the model's
    positions: past them a model either errors deep inside attention or silently writes
    from truncated or wrapped positions, so its text would not be what the spec asked for."""
    limit = lm.info.max_positions
    if not limit:
        return
    longest = max(range(len(rows)), key=lambda i: prompt_tokens[i])
    n = int(prompt_tokens[longest])
    if n + max_new_tokens > limit:
        raise PromptTooLongError(
            f"prompt '{rows[longest].prompt_id}' is {n} tokens (as rendered); with "
            f"max_new_tokens = {max_new_tokens} that is {n + max_new_tokens} positions, more "
            f"than the model's {limit}; shorten the prompt or lower generation.max_new_tokens"
        )


def _eos_ids(lm: LoadedModel) -> list[int]:
    ids: set[int] = set()
    cfg_eos = getattr(lm.model.generation_config, "eos_token_id", None)
    for value in (cfg_eos, lm.tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(int(v) for v in value)
    return sorted(ids)
