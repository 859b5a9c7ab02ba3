"""The judge's score key (issue 10, point 8): only what changes a score re-scores.

Concurrency, timeouts, retries, the cache's location, batch sizes and fail-fast change how
the judge is asked, never what it answers: changing them in a finished run's spec asks the
judge nothing and keeps every score id and byte of scores.jsonl. Malformed answers are
retried once and then final nulls, so a re-run does not ask them again."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import spec_toml, write_prompts
from fakes.judge_server import FakeJudgeServer, Reply, Request, chat_logprobs, chat_text

from harness.config.scorers import resolve_scorer
from harness.core.scoring import is_final
from harness.core.store import JsonlStore
from harness.run.runner import open_plan, run_stages

pytest.importorskip("openai")

BASE = {
    "model": "fake-judge",
    "traits": ["fear"],
    "max_concurrency": 8,
    "timeout": 5.0,
    "backoff_base": 0.01,
}


def key(tmp_path: Path, **params: Any) -> str:
    resolved, problems = resolve_scorer("judge", "judge", {**BASE, **params}, tmp_path, ("s", 0))
    assert resolved is not None and problems == []
    return resolved.key


def test_the_key_ignores_how_the_judge_is_asked(tmp_path: Path) -> None:
    ref = key(tmp_path)
    operational = {
        "max_concurrency": 2,
        "timeout": 30.0,
        "max_retries": 0,
        "backoff_base": 3.0,
        "backoff_max": 5.0,
        "cache": False,
        "cache_path": str(tmp_path / "other.sqlite"),
        "fail_fast": 4,
        "batch_size": 7,
        "api_key_env": "OTHER_KEY",
        "batch": True,
        "batch_max_requests": 10,
        "batch_poll_interval": 0.5,
        "batch_poll_max": 9.0,
        "batch_timeout": 60.0,
        "price": {"input": 1.0, "output": 2.0, "batch_input": 0.5, "batch_output": 1.0},
    }
    for field, value in operational.items():
        assert key(tmp_path, **{field: value}) == ref, field
    template = tmp_path / "trait.md"
    template.write_text("Rate {trait} ({definition}) in {response}. Answer 0-100.")
    scoring = {
        "model": "other-judge",
        "base_url": "http://127.0.0.1:1/v1",
        "provider": "anthropic",
        "mode": "sample",
        "traits": ["joy"],
        "definitions": {"fear": "Being scared of something."},
        "coherence": False,
        "trait_template": str(template),
        "min_number_mass": 0.5,
        "top_logprobs": 5,
        "samples": 3,
        "sample_temperature": 0.5,
        "extra_body": {"seed": 1},
        "max_response_chars": 100,
    }
    keys = {ref}
    for field, value in scoring.items():
        k = key(tmp_path, **{field: value})
        assert k not in keys, field
        keys.add(k)
    # an edited template file re-scores though its path is the same
    before = key(tmp_path, trait_template=str(template))
    template.write_text("Rate {trait} in {response}, please. Answer 0-100.")
    assert key(tmp_path, trait_template=str(template)) != before


@pytest.fixture(scope="module")
def generated(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A generated run (no scores yet), a server whose app a test sets, a spec writer."""
    root = tmp_path_factory.mktemp("scorekey")
    holder: dict[str, Any] = {}
    prompts = write_prompts(root / "prompts.jsonl", 2)
    with FakeJudgeServer(lambda req: holder["app"](req)) as server:

        def write_spec(run: Path, **params: Any) -> Path:
            p = {**BASE, "base_url": server.openai_url, "cache_path": str(root / "a.sqlite")}
            p.update(params)
            body = "\n".join(f"{k} = {toml(v)}" for k, v in p.items())
            extra = f'\n[[scorers]]\ntype = "judge"\n[scorers.params]\n{body}\n'
            spec = run.parent / f"spec-{len(list(run.parent.glob('spec-*')))}.toml"
            spec.write_text(spec_toml(tiny_model_dir, prompts, extra=extra, output_dir=run))
            return spec

        run = root / "generated" / "run"
        run.parent.mkdir()
        plan, source = open_plan(write_spec(run))
        run_stages(plan, source, ("generate",))
        yield run, server, holder, write_spec


def toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return str(value)


def fresh_copy(generated_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(generated_run, run)
    return run


def score(spec: Path) -> None:
    plan, source = open_plan(spec)
    run_stages(plan, source, ("score",))


def judged(run: Path) -> list[dict[str, Any]]:
    return [r for r in JsonlStore(run / "scores.jsonl").read() if r["scorer"] == "judge"]


def distinct_texts(run: Path) -> int:
    """Texts the judge is asked about: identical (prompt, text) pairs, which a tiny random
    model can write for two seeds, share one cached answer."""
    return len({(g["prompt"], g["text"]) for g in JsonlStore(run / "generations.jsonl").read()})


def answer(req: Request) -> Reply:
    return Reply(body=chat_logprobs({str(len(req.prompt) % 101): 0.8, "50": 0.2}))


def test_changing_concurrency_timeouts_retries_or_cache_path_rescore_nothing(
    generated: Any, tmp_path: Path
) -> None:
    generated_run, server, holder, write_spec = generated
    run = fresh_copy(generated_run, tmp_path)
    holder["app"] = answer
    server.reset()
    score(write_spec(run))
    asked = len(server.requests)
    scores = (run / "scores.jsonl").read_bytes()
    ids = sorted(r["id"] for r in judged(run))
    distinct = distinct_texts(run)
    assert asked == distinct * 2 and len(ids) == 12 * 2  # 12 texts x (fear, coherence)
    server.reset()
    changed = write_spec(
        run,
        max_concurrency=2,
        timeout=9.0,
        max_retries=1,
        backoff_max=2.0,
        cache_path=str(tmp_path / "fresh.sqlite"),  # an empty cache: any re-score would ask
        batch_size=3,
        fail_fast=5,
    )
    score(changed)
    assert len(server.requests) == 0
    assert (run / "scores.jsonl").read_bytes() == scores
    # what changes a score does re-score (so the test can fail)
    score(write_spec(run, definitions={"fear": "Being scared of a thing."}))
    assert len(server.requests) == distinct  # the fear calls; coherence answers from the cache
    assert len(judged(run)) == 2 * len(ids)  # a new scorer key: both metrics recorded anew


def test_malformed_answers_become_final_nulls_after_the_retries(
    generated: Any, tmp_path: Path
) -> None:
    generated_run, server, holder, write_spec = generated
    run = fresh_copy(generated_run, tmp_path)
    holder["app"] = lambda req: Reply(body=chat_text("50"))  # a server without logprobs
    server.reset()
    spec = write_spec(run, max_retries=4, cache_path=str(tmp_path / "m.sqlite"))
    score(spec)
    # each call tried twice, not max_retries + 1
    assert len(server.requests) == distinct_texts(run) * 2 * 2
    records = judged(run)
    assert len(records) == 24
    assert all(r["value"] is None and "no logprobs" in r["reason"] for r in records)
    assert all(is_final(r) for r in records)
    server.reset()
    score(spec)  # a re-run asks none of them again
    assert len(server.requests) == 0
