"""The reproducible sampler: counter-based Gumbel noise computed where the logits are.

Why. A row's text must depend only on (prompt, seed) and the intervention, never on the
batch it sits in, its position there, or which conditions share the batch. So a row's
random numbers cannot come from a shared generator; and a per-row generator drawn in a
Python loop on the host costs a loop and a device round-trip at every step. Instead the
noise is a pure function of (row stream seed, step, token index), computed for the whole
batch in one vectorised pass of integer tensor ops on the logits' device.

The generator is counter-based (Salmon, Moraes, Dror & Shaw 2011, "Parallel random
numbers: as easy as 1, 2, 3", SC'11): the value at a counter is a keyed hash of the
counter, so any element can be computed independently of every other.

* Per (row, step) a 64-bit key is the step-th output of SplitMix64 seeded by the row's
  stream seed, ``mix64(seed + (t + 1) * 0x9E3779B97F4A7C15)`` (Steele, Lea & Flood 2014,
  "Fast splittable pseudorandom number generators", OOPSLA; Vigna's reference constants).
  This touches one element per row, in int64 (torch has no uint64: wrap-around
  multiplication is the same bits, and logical right shifts are arithmetic shifts masked).
* Per token the key's two 32-bit halves key two rounds of the MurmurHash3 32-bit
  finaliser (Appleby 2008; a bijection on 32 bits) over a Weyl sequence of the token
  index: ``fmix32(fmix32(v * 0x9E3779B9 + k_lo) ^ k_hi)``. This is the part over the whole
  vocabulary, so it runs in int32 (native vector multiplication on CPUs, half the memory
  traffic of int64).
* The top 24 bits give ``w = (h + 0.5) / 2**24`` in (0, 1), exact in float32, and
  ``G = -log(-log w)`` is standard Gumbel noise (bounded to [-2.85, 17.3] by the 24-bit
  grid; the mass cut off is below 1e-7).

Sampling then is the Gumbel-max identity: ``argmax_v(logits_v / T + G_v)`` with G i.i.d.
standard Gumbel is an exact draw from ``softmax(logits / T)`` (Gumbel 1954; Maddison,
Tarlow & Minka 2014, "A* Sampling"). The processor returns the perturbed logits and the
model decodes greedily over them. Top-k / top-p truncation is applied before the noise
(truncated tokens get -inf). Because the noise of a row does not depend on the logits,
a steered text and its baseline twin share their noise: they differ only where the
intervention moves the argmax.

What is bitwise identical: the integer part always; the float part (two logs, one add)
is elementwise, so a row sees the same values alone or in any batch, up to the last-ulp
differences a vectorised math library may show between vector body and scalar tail,
which is below the rounding of the model's own logits across batch shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.config.spec import SAMPLER

__all__ = ["SAMPLER", "CounterGumbelSampler", "gumbel_noise", "step_keys", "truncate"]

_MASK64 = (1 << 64) - 1


def _signed(value: int, bits: int) -> int:
    """An unsigned constant as the signed integer with the same bits."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


_GAMMA64 = _signed(0x9E3779B97F4A7C15, 64)
_MIX64_A = _signed(0xBF58476D1CE4E5B9, 64)
_MIX64_B = _signed(0x94D049BB133111EB, 64)
_GAMMA32 = _signed(0x9E3779B9, 32)
_FMIX32_A = _signed(0x85EBCA6B, 32)
_FMIX32_B = _signed(0xC2B2AE35, 32)


def _srl(x: torch.Tensor, shift: int, bits: int) -> torch.Tensor:
    """Logical right shift of a signed integer tensor (arithmetic shift, sign bits masked)."""
    return (x >> shift) & ((1 << (bits - shift)) - 1)


def _mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on an int64 tensor (in place)."""
    x ^= _srl(x, 30, 64)
    x *= _MIX64_A
    x ^= _srl(x, 27, 64)
    x *= _MIX64_B
    x ^= _srl(x, 31, 64)
    return x


def _fmix32(x: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser on an int32 tensor, in place; ``tmp`` (same shape and
    dtype) holds the shifted copies, so no temporary is allocated."""
    for shift, factor in ((16, _FMIX32_A), (13, _FMIX32_B), (16, 0)):
        torch.bitwise_right_shift(x, shift, out=tmp)
        tmp &= (1 << (32 - shift)) - 1  # the logical shift: sign bits masked
        x ^= tmp
        if factor:
            x *= factor
    return x


CPU_BLOCK = 1 << 18
"""Elements (int32) per block of rows on the CPU: 1 MiB, so the hash's working set stays
in cache and its buffers are reused. Over a whole (64, 128k) batch each temporary is 32 MiB,
which the allocator maps fresh from the OS at every step: measured 5x slower on one thread,
and as variable as the machine's page faults. On accelerators the whole batch is one
block (one kernel per operation)."""


def step_keys(seeds: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (low, high) int32 halves of each row's SplitMix64 output number ``step``.

    ``seeds`` is an int64 tensor of stream seeds, shape (B,)."""
    x = seeds + _signed((step + 1) * 0x9E3779B97F4A7C15, 64)
    x = _mix64(x)
    lo = _signed_int32(x & 0xFFFFFFFF)
    hi = _signed_int32(_srl(x, 32, 64))
    return lo, hi


def _signed_int32(x: torch.Tensor) -> torch.Tensor:
    """Values in [0, 2**32) held in int64, as int32 with the same bits."""
    return torch.where(x >= 1 << 31, x - (1 << 32), x).to(torch.int32)


def gumbel_noise(
    seeds: torch.Tensor, step: int, vocab: int, index: torch.Tensor | None = None
) -> torch.Tensor:
    """Standard Gumbel noise, shape (B, vocab) float32, on ``seeds``' device: element
    (r, v) is a function of (seeds[r], step, v) only. ``index`` may pass a cached
    ``arange(vocab, dtype=int32)`` on that device.

    Computed in blocks of whole rows (:data:`CPU_BLOCK` on the CPU, the whole batch
    elsewhere): every operation is elementwise, so the blocking changes no bit."""
    lo, hi = step_keys(seeds, step)
    device = seeds.device
    if index is None:
        index = torch.arange(vocab, dtype=torch.int32, device=device)
    weyl = index * _GAMMA32
    n_rows = seeds.shape[0]
    rows = max(1, CPU_BLOCK // max(vocab, 1)) if device.type == "cpu" else n_rows
    rows = min(rows, n_rows)
    out = torch.empty(n_rows, vocab, dtype=torch.float32, device=device)
    x = torch.empty(rows, vocab, dtype=torch.int32, device=device)
    tmp = torch.empty_like(x)
    for r0 in range(0, n_rows, rows):
        r1 = min(n_rows, r0 + rows)
        xb, tb = x[: r1 - r0], tmp[: r1 - r0]
        torch.add(weyl[None, :], lo[r0:r1, None], out=xb)
        _fmix32(xb, tb)
        xb ^= hi[r0:r1, None]
        _fmix32(xb, tb)
        torch.bitwise_right_shift(xb, 8, out=tb)
        tb &= (1 << 24) - 1
        w = out[r0:r1]
        w.copy_(tb)  # the top 24 bits, exact in float32
        w.add_(0.5).mul_(2.0**-24).log_().neg_().log_().neg_()
    return out


def truncate(logits: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """Top-k then top-p (nucleus) truncation: dropped tokens get -inf."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p.
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class CounterGumbelSampler:
    """A logits processor that turns greedy decoding into per-row seeded sampling.

    The step counter is the number of tokens generated so far (the length of
    ``input_ids`` past the length at the first call), so it is the same for every row
    whatever the padding of its batch."""

    def __init__(self, row_seeds: Sequence[int], temperature: float, top_p: float, top_k: int):
        self.seeds = torch.tensor([_signed(s, 64) for s in row_seeds], dtype=torch.int64)
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self._start: int | None = None
        self._index: torch.Tensor | None = None

    def perturb(self, scores: torch.Tensor, step: int) -> torch.Tensor:
        """``truncate(scores / T) + G(step)``, float32, on the scores' device."""
        if scores.shape[0] != self.seeds.shape[0]:
            raise RuntimeError("CounterGumbelSampler: batch size changed during generation")
        device, vocab = scores.device, scores.shape[-1]
        if self.seeds.device != device:
            self.seeds = self.seeds.to(device)
        if self._index is None or self._index.shape[0] != vocab or self._index.device != device:
            self._index = torch.arange(vocab, dtype=torch.int32, device=device)
        logits = truncate(scores.float() / self.temperature, self.top_p, self.top_k)
        return logits.add_(gumbel_noise(self.seeds, step, vocab, self._index))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._start is None:
            self._start = int(input_ids.shape[-1])
        # float32 whatever the model's dtype: rounding to bfloat16 would make ties.
        return self.perturb(scores, int(input_ids.shape[-1]) - self._start)  # type: ignore[return-value]
