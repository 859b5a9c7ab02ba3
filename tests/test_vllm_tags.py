"""Which request each token of vLLM's flattened batch belongs to (harness.model.vllm_hooks),
on stand-ins for vLLM V1's model runner and attention metadata: the right tags for a
known layout, and a reason instead of tags whenever the layout is not what is expected
(then the shared call is discarded and each condition generated alone). Needs no vLLM;
tests/vllm/ checks the same code inside a real engine."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from harness.model.vllm_hooks import CONDITION, runner_problem, token_tags


def runner(lengths: list[int], tags: list[int | None], spare: int = 3) -> SimpleNamespace:
    """A runner whose batch holds requests r0, r1, ... with these scheduled token counts
    (``spare`` unused buffer slots after them, as vLLM pads its buffers) and tags
    (None: a request without ``extra_args``, as a plain vLLM request)."""
    locs = np.zeros(len(lengths) + 1 + spare, dtype=np.int32)
    locs[1 : len(lengths) + 1] = np.cumsum(lengths)
    locs[len(lengths) + 1 :] = locs[len(lengths)]
    requests = {
        f"r{i}": SimpleNamespace(
            sampling_params=SimpleNamespace(extra_args=None if t is None else {CONDITION: t})
        )
        for i, t in enumerate(tags)
    }
    return SimpleNamespace(
        input_batch=SimpleNamespace(num_reqs=len(lengths), req_ids=[*requests, None]),
        requests=requests,
        query_start_loc=SimpleNamespace(np=locs),
    )


def metadata(run: SimpleNamespace, **extra: object) -> dict[str, SimpleNamespace]:
    n = run.input_batch.num_reqs
    locs = torch.from_numpy(run.query_start_loc.np.copy())
    actual = int(run.query_start_loc.np[n])
    return {
        "layers.0.attn": SimpleNamespace(query_start_loc=locs, num_actual_tokens=actual, **extra)
    }


def test_each_token_gets_its_requests_tag_and_padding_none() -> None:
    run = runner([3, 1, 2, 1], [2, 0, 1, None])
    out = token_tags(run, metadata(run), 9)  # 7 tokens and 2 of padding
    assert isinstance(out, tuple)
    tags, seen = out
    assert tags.tolist() == [2, 2, 2, 0, 1, 1, 0, 0, 0]
    assert seen == {0, 1, 2}


def test_a_request_with_no_tokens_this_step_is_not_seen() -> None:
    run = runner([2, 0, 1], [1, 2, 0])
    out = token_tags(run, metadata(run), 3)
    assert isinstance(out, tuple)
    assert out[0].tolist() == [1, 1, 0] and out[1] == {0, 1}


def test_a_pass_without_requests_steers_nothing() -> None:
    run = runner([], [])
    assert token_tags(run, metadata(run), 4) is None
    assert token_tags(runner([2], [1]), {}, 2) is None  # a dummy run: no attention metadata


def test_unexpected_layouts_give_a_reason_not_tags() -> None:
    run = runner([3, 2], [1, 2])
    good = metadata(run)
    assert isinstance(token_tags(run, good, 5), tuple)
    reasons = {
        "fewer tokens than scheduled": token_tags(run, good, 4),
        "micro-batches": token_tags(run, [good, good], 5),
        "no query_start_loc": token_tags(run, {"a": SimpleNamespace(num_actual_tokens=5)}, 5),
        "other boundaries": token_tags(
            run, {"a": SimpleNamespace(query_start_loc=torch.tensor([0, 2, 5]))}, 5
        ),
        "other token count": token_tags(
            run,
            {
                "a": SimpleNamespace(
                    query_start_loc=good["layers.0.attn"].query_start_loc, num_actual_tokens=4
                )
            },
            5,
        ),
        "short boundaries": token_tags(
            run, {"a": SimpleNamespace(query_start_loc=torch.tensor([0, 3]))}, 5
        ),
    }
    unknown = runner([3, 2], [1, 2])
    unknown.requests.pop("r1")
    reasons["unknown request"] = token_tags(unknown, metadata(unknown), 5)
    assert all(isinstance(r, str) and r for r in reasons.values()), reasons
    assert "r1" in reasons["unknown request"]


def test_runner_problem_names_what_is_missing() -> None:
    assert runner_problem(None) is not None
    assert "input_batch" in (runner_problem(SimpleNamespace()) or "")
    bare = SimpleNamespace(input_batch=SimpleNamespace(num_reqs=0), requests={})
    assert "req_ids" in (runner_problem(bare) or "")
