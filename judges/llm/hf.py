"""A local Hugging Face causal LM as a judge: its own distribution over the numbers 0-100.

Why not read the first token's logprobs as with an API: many tokenizers split numbers
("42" -> "4", "2"; Llama 2, Mistral, Qwen, Gemma do), so one token cannot say "42". Each
candidate k = 0..100 is scored instead by the probability that the model writes exactly
k::

    p(k) = prod_j p(t_j | prompt, t_<j) * (1 - p(next token continues with a digit | prompt, t))

where t = t_1..t_m are k's tokens right after the prompt. The final factor makes the
candidates disjoint events ("1" followed by "0" is the answer 10, not 1), so the p(k) sum
to at most 1 and the number mass means what it means for an API judge. A token continues
the number when its vocabulary string (``convert_ids_to_tokens``) starts with an ASCII
digit; a space-prefixed digit token ("Ġ5", "▁5") starts a new word and does not.

The prompt is run once and its key/value cache reused; the 101 candidates are then scored
in batches of ``batch_size`` (at most 32; right-padded, one forward pass of 1-3 tokens
each over the cached prompt; models without a reusable cache run prompt + candidate
sequences in full, logits kept only at the candidate positions); the expectation and the
number-mass rule are then exactly those of :mod:`judges.llm.aggregation`.

Prompt: the judge's chat template when it has one (the rubric as the user turn, generation
prompt added; candidates follow directly), else the rubric followed by ``"\\nScore:"``
with candidates written as ``" k"``. Candidate tokens are taken from tokenising prompt and
candidate together when that keeps the prompt's tokens as a prefix (so merges at the
boundary are the tokenizer's own), else from tokenising the candidate alone.

The model is loaded with :func:`harness.model.loading.load_model` (aliases, GGUF, device and
dtype rules, manifest fingerprint), on the first call that misses the cache only.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from harness.config.spec import ChatTemplate, DType, ModelSpec
from harness.core.errors import ModelLoadError, SpecError
from harness.core.ids import content_id
from harness.core.scoring import ModelWorkers
from harness.model.device import pick_device, pick_dtype
from harness.model.loading import load_model
from judges.llm.aggregation import MAX_SCORE
from judges.llm.retry import FatalJudgeError, JudgeCallError

RAW_SUFFIX = "\nScore:"


class TokenizerUnfit(ValueError):
    """The judge's tokenizer cannot write every number 0-100 as a distinct sequence."""


class HFJudgeModel:
    """The synchronous model side: candidate ids, batched sequence log-probabilities."""

    def __init__(self, lm: Any, batch_size: int = 101):
        import torch

        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.batch_size = batch_size
        self.trie_ok: bool | None = None
        """Whether the one-pass prefix tree gives the batched values (None: not checked yet)."""
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        mask = [isinstance(t, str) and t[:1].isascii() and t[:1].isdigit() for t in tokens]
        self.digit_mask = torch.tensor(mask, dtype=torch.bool, device=self.lm.device)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        if vocab > len(mask):  # padded embedding rows beyond the tokenizer are not digits
            pad = torch.zeros(vocab - len(mask), dtype=torch.bool, device=self.lm.device)
            self.digit_mask = torch.cat([self.digit_mask, pad])
        self.digit_mask = self.digit_mask[:vocab]

    def render(self, prompt: str) -> tuple[str, str]:
        """(text before the answer, separator before a candidate)."""
        if self.lm.use_chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            return str(text), ""
        return prompt + RAW_SUFFIX, " "

    def _encode(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=not self.lm.use_chat_template)["input_ids"]
        return [int(i) for i in ids]

    def candidate_ids(self, prefix: str, sep: str) -> tuple[list[int], list[list[int]]]:
        """Prompt ids and, for k = 0..100, the ids of the answer k after the prompt."""
        prompt_ids = self._encode(prefix)
        cands: list[list[int]] = []
        for k in range(MAX_SCORE + 1):
            joint = self._encode(prefix + sep + str(k))
            if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
                cands.append(joint[len(prompt_ids) :])
            else:
                alone = self.tokenizer(sep + str(k), add_special_tokens=False)["input_ids"]
                cands.append([int(i) for i in alone])
        unk = self.tokenizer.unk_token_id
        if len({tuple(c) for c in cands}) < len(cands) or any(
            not c or (unk is not None and unk in c) for c in cands
        ):
            raise TokenizerUnfit(
                "the judge's tokenizer cannot spell every number 0-100 distinctly "
                "(unknown or colliding tokens); use another judge model"
            )
        return prompt_ids, cands

    def number_logprobs(self, prompt: str) -> list[float | None]:
        """log p(k) for k = 0..100 as defined in the module docstring (None for p = 0).

        Fastest first: the prompt once, then every candidate's tokens as one prefix tree in
        one pass over the prompt's key/value cache (:meth:`_trie_logprobs`); checked once
        per judge model against candidate batches over copies of the cache, which a model
        that ignores a 4D attention mask would fail, and used (that first call included)
        only if equal, so a prompt's values depend on the model alone, never on whether it
        was a process's first call (a resumed run, a Ray actor). Models that cannot continue
        from a cache run prompt + candidate in full."""
        prefix, sep = self.render(prompt)
        prompt_ids, cands = self.candidate_ids(prefix, sep)
        try:
            if self.trie_ok is False:
                return self._cached_logprobs(prompt_ids, cands)
            fast = self._trie_logprobs(prompt_ids, cands)
            if self.trie_ok is None:
                slow = self._cached_logprobs(prompt_ids, cands)
                self.trie_ok = all(
                    (a is None and b is None)
                    or (a is not None and b is not None and abs(a - b) <= 1e-3 * max(1, abs(b)))
                    for a, b in zip(fast, slow, strict=True)
                )
                return fast if self.trie_ok else slow
            return fast
        except (TypeError, AttributeError, NotImplementedError, ValueError, RuntimeError):
            return self._full_logprobs(prompt_ids, cands)

    def _prompt_cache(self, prompt_ids: list[int]) -> tuple[Any, Any]:
        """(log-probs after the prompt, its key/value cache)."""
        import torch

        first = self.model(
            input_ids=torch.tensor([prompt_ids], device=self.lm.device), use_cache=True
        )
        cache = getattr(first, "cache", None) or getattr(first, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            raise NotImplementedError("no reusable key/value cache")
        return torch.log_softmax(first.logits[0, -1].float(), dim=-1), cache

    def _continue(self, cache: Any, **inputs: Any) -> Any:
        """One forward pass after ``cache`` (its keyword is ``cache`` in newer transformers)."""
        try:
            return self.model(**inputs, cache=cache, use_cache=True)
        except TypeError:
            return self.model(**inputs, past_key_values=cache, use_cache=True)

    def _trie_logprobs(self, prompt_ids: list[int], cands: list[list[int]]) -> list[float | None]:
        """Every distinct candidate prefix is one token of a single sequence after the
        cached prompt, attending to the prompt and its own ancestors only (a 4D mask,
        positions by depth): 101 tokens in one pass instead of 101 sequences."""
        import torch

        nodes: dict[tuple[int, ...], int] = {}
        for c in cands:
            for d in range(1, len(c) + 1):
                nodes.setdefault(tuple(c[:d]), len(nodes))
        order = list(nodes)
        n, big = len(prompt_ids), len(order)
        dev = self.lm.device
        allowed = torch.zeros(big, n + big, dtype=torch.bool)
        allowed[:, :n] = True
        for i, p in enumerate(order):
            for d in range(1, len(p) + 1):
                allowed[i, n + nodes[p[:d]]] = True
        dtype = self.model.get_output_embeddings().weight.dtype
        mask = torch.zeros(1, 1, big, n + big, dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
        with torch.inference_mode():
            head, cache = self._prompt_cache(prompt_ids)
            logits = self._continue(
                cache,
                input_ids=torch.tensor([[p[-1] for p in order]], device=dev),
                position_ids=torch.tensor([[n + len(p) - 1 for p in order]], device=dev),
                attention_mask=mask.to(dev),
            ).logits[0]
            logp = torch.log_softmax(logits.float(), dim=-1)
        digit = torch.logsumexp(logp[:, self.digit_mask], dim=-1)
        out: list[float | None] = []
        for c in cands:
            total = float(head[c[0]])
            for d in range(1, len(c)):
                total += float(logp[nodes[tuple(c[:d])], c[d]])
            p_digit = math.exp(float(digit[nodes[tuple(c)]]))
            total += math.log1p(-p_digit) if p_digit < 1.0 else -math.inf
            out.append(total if math.isfinite(total) else None)
        return out

    def _totals(self, logp: Any, chunk: list[list[int]]) -> list[float | None]:
        """Per candidate: sum of its tokens' log-probs plus log P(no digit follows)."""
        import torch

        digit = torch.logsumexp(logp[:, :, self.digit_mask], dim=-1)  # [B, longest + 1]
        out: list[float | None] = []
        for b, c in enumerate(chunk):
            total = 0.0
            for j, tok in enumerate(c):
                total += float(logp[b, j, tok])
            p_digit = math.exp(float(digit[b, len(c)]))
            stop = math.log1p(-p_digit) if p_digit < 1.0 else -math.inf
            total += stop
            out.append(total if math.isfinite(total) else None)
        return out

    def _cached_logprobs(self, prompt_ids: list[int], cands: list[list[int]]) -> list[float | None]:
        import copy

        import torch

        dev = self.lm.device
        n_prompt = len(prompt_ids)
        longest = max(len(c) for c in cands)
        pad_id = self.tokenizer.pad_token_id
        pad_id = 0 if pad_id is None else int(pad_id)
        # The cache is copied once per batch: keep batches small enough that the copies
        # (batch x layers x prompt tokens) stay a few hundred MB on a 100M+ model.
        step = min(self.batch_size, 32)
        out: list[float | None] = []
        with torch.inference_mode():
            head_logp, cache = self._prompt_cache(prompt_ids)
            head = head_logp[None, None, :]  # log-probs already: log_softmax leaves them
            for start in range(0, len(cands), step):
                chunk = cands[start : start + step]
                rows = [c + [pad_id] * (longest - len(c)) for c in chunk]
                masks = [[1] * (n_prompt + len(c)) + [0] * (longest - len(c)) for c in chunk]
                kv = copy.deepcopy(cache)
                kv.batch_repeat_interleave(len(chunk))
                tail = self._continue(
                    kv,
                    input_ids=torch.tensor(rows, device=dev),
                    attention_mask=torch.tensor(masks, device=dev),
                ).logits.float()
                logits = torch.cat([head.expand(len(chunk), -1, -1), tail], dim=1)
                out += self._totals(torch.log_softmax(logits, dim=-1), chunk)
        return out

    def _full_logprobs(self, prompt_ids: list[int], cands: list[list[int]]) -> list[float | None]:
        import torch

        n_prompt = len(prompt_ids)
        longest = max(len(c) for c in cands)
        keep = torch.arange(n_prompt - 1, n_prompt + longest, device=self.lm.device)
        pad_id = self.tokenizer.pad_token_id
        pad_id = 0 if pad_id is None else int(pad_id)
        out: list[float | None] = []
        for start in range(0, len(cands), self.batch_size):
            chunk = cands[start : start + self.batch_size]
            rows = [prompt_ids + c + [pad_id] * (longest - len(c)) for c in chunk]
            masks = [[1] * (n_prompt + len(c)) + [0] * (longest - len(c)) for c in chunk]
            input_ids = torch.tensor(rows, device=self.lm.device)
            attention = torch.tensor(masks, device=self.lm.device)
            with torch.inference_mode():
                logits = self._logits(input_ids, attention, keep)
            out += self._totals(torch.log_softmax(logits.float(), dim=-1), chunk)
        return out

    def _logits(self, input_ids: Any, attention: Any, keep: Any) -> Any:
        """Logits at the positions ``keep`` only, when the model can skip the others."""
        try:
            return self.model(
                input_ids=input_ids, attention_mask=attention, logits_to_keep=keep
            ).logits
        except TypeError:  # a model without logits_to_keep: compute all, then select
            full = self.model(input_ids=input_ids, attention_mask=attention).logits
            return full[:, keep, :]

    def sample(self, prompt: str, max_new_tokens: int, temperature: float, seed: int) -> str:
        import torch

        prefix, _ = self.render(prompt)
        ids = torch.tensor([self._encode(prefix)], device=self.lm.device)
        torch.manual_seed(seed)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        return str(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


class HFProvider:
    """The async face of :class:`HFJudgeModel`: one computation at a time, off the loop."""

    name = "hf"
    supports_logprobs = True

    def __init__(
        self,
        *,
        model: str,
        revision: str | None,
        device: str,
        dtype: DType,
        chat_template: ChatTemplate,
        trust_remote_code: bool,
        batch_size: int,
    ):
        self.model = model
        self.revision = revision
        self.device = device
        self.dtype = dtype
        self.chat_template = chat_template
        self.trust_remote_code = trust_remote_code
        self.batch_size = batch_size
        self._judge: HFJudgeModel | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> dict[str, Any]:
        dtype = str(pick_dtype(self.dtype, pick_device(self.device))).removeprefix("torch.")
        return {
            "provider": self.name,
            "revision": self.revision,
            "dtype": dtype,
            "chat_template": self.chat_template,
        }

    def _load(self) -> HFJudgeModel:
        """Load once; a model that cannot be loaded or cannot spell numbers stops the run."""
        if self._judge is None:
            spec = ModelSpec(
                id=self.model,
                revision=self.revision,
                device=self.device,
                dtype=self.dtype,
                chat_template=self.chat_template,
                trust_remote_code=self.trust_remote_code,
            )
            try:
                judge = HFJudgeModel(load_model(spec), self.batch_size)
                judge.candidate_ids(*judge.render("Rate this."))
            except (ModelLoadError, TokenizerUnfit) as exc:
                raise FatalJudgeError(f"judge model '{self.model}'", str(exc)) from None
            self._judge = judge
        return self._judge

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:  # one computation at a time: the model is not re-entrant
            return fn(*args)

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(self._locked, fn, *args)
        except (JudgeCallError, SpecError):
            raise
        except Exception as exc:  # e.g. out of memory on one long prompt
            raise JudgeCallError(f"local judge failed: {type(exc).__name__}: {exc}") from exc

    async def top_logprobs(self, prompt: str, decoding: Mapping[str, Any]) -> list[list[Any]]:
        judge = await self._run(self._load)
        logps: Sequence[float | None] = await self._run(judge.number_logprobs, prompt)
        return [[str(k), lp] for k, lp in enumerate(logps)]

    async def sample(self, prompt: str, decoding: Mapping[str, Any]) -> str:
        judge = await self._run(self._load)
        temperature = decoding.get("temperature")
        seed = int(decoding.get("sample", 0))
        return str(
            await self._run(
                judge.sample,
                prompt,
                int(decoding["max_tokens"]),
                1.0 if temperature is None else float(temperature),
                seed,
            )
        )

    async def aclose(self) -> None:
        return None


class OffloadedHFProvider:
    """An :class:`HFProvider` whose model lives in other processes (``workers``: the Ray
    engine's scoring actors): each call runs there on an :class:`HFProvider` built from the
    same arguments, so it answers exactly what the local one answers. The judge that asks,
    its cache and the aggregation stay in this process (the run's one writer); only the
    cache misses travel, as prompts. Its identity (device, dtype) is the workers' own, as
    it is where the numbers are computed."""

    name = "hf"
    supports_logprobs = True

    def __init__(self, workers: ModelWorkers, **kwargs: Any):
        self.workers = workers
        self.model = str(kwargs["model"])
        self.build = functools.partial(HFProvider, **kwargs)
        self.key = f"hf judge {kwargs['model']} ({content_id(kwargs, length=12)})"
        self._identity: dict[str, Any] | None = None

    @property
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = dict(self.workers.call(self.key, self.build, "identity"))
        return self._identity

    async def top_logprobs(self, prompt: str, decoding: Mapping[str, Any]) -> list[list[Any]]:
        out: list[list[Any]] = await self.workers.acall(
            self.key, self.build, "top_logprobs", prompt, dict(decoding)
        )
        return out

    async def sample(self, prompt: str, decoding: Mapping[str, Any]) -> str:
        return str(await self.workers.acall(self.key, self.build, "sample", prompt, dict(decoding)))

    async def aclose(self) -> None:
        return None
