"""Secrets redacted by value (issue 10, point 3): a judge server that echoes the bare API key
(no ``sk-`` prefix, nothing a pattern could catch) in a malformed 200 body, a 500 body, a
response header or a 401 leaves the key in no file of the run, no log line (at DEBUG, where
the HTTP libraries print headers) and nothing printed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import spec_toml, write_prompts
from fakes.judge_server import FakeJudgeServer, Reply, Request, chat_logprobs, error_body

from harness.cli import main

pytest.importorskip("openai")

KEY = "Zq7TxW3mPp9LkV2sHd4RbN8c"
"""A bare key: only its value can find it."""
ENV = "STEER_TEST_SECRET_JUDGE_KEY"


def echoing_app(mode: str):  # type: ignore[no-untyped-def]
    """A judge that echoes the key it was sent, the way misconfigured proxies do."""

    def app(req: Request) -> Reply:
        sent = req.headers.get("authorization", "").removeprefix("Bearer ")
        echo = {"x-echo-key": sent, "x-request-auth": f"key={sent}"}
        if mode == "malformed200":
            return Reply(body={"choices": f"your key {sent} has no model 'fake-judge'"})
        if mode == "text200":
            return Reply(body=f"<html>proxy: key {sent} accepted</html>", headers=echo)
        if mode == "error500":
            return Reply(status=500, body=error_body(f"upstream refused key {sent}"), headers=echo)
        if mode == "header200":
            return Reply(body=chat_logprobs({"40": 0.7, "60": 0.3}), headers=echo)
        if mode == "fatal401":
            return Reply(status=401, body=error_body(f"invalid key {sent}"), headers=echo)
        raise AssertionError(mode)

    return app


def leaks(text: str | bytes) -> int:
    data = text.encode() if isinstance(text, str) else text
    return data.count(KEY.encode())


@pytest.mark.parametrize("mode", ["malformed200", "text200", "error500", "header200", "fatal401"])
def test_an_echoed_key_reaches_no_file_log_or_stream(
    mode: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ENV, KEY)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    with FakeJudgeServer(echoing_app(mode)) as server:
        extra = f'''
[[scorers]]
type = "judge"
[scorers.params]
model = "fake-judge"
base_url = "{server.openai_url}"
api_key_env = "{ENV}"
traits = ["fear"]
cache_path = "{tmp_path / "judge.sqlite"}"
max_retries = 1
backoff_base = 0.0
timeout = 5.0
'''
        prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
        spec = tmp_path / "spec.toml"
        spec.write_text(
            spec_toml(
                tiny_model_dir, prompts, seeds="[0]", extra=extra, output_dir=tmp_path / "run"
            )
        )
        rc = main(["-v", "run", str(spec), "--report", str(tmp_path / "report.md")])
        assert server.requests, "the judge was never asked"
        assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in server.requests)
    out = capsys.readouterr()
    found: dict[str, int] = {}
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        if path.name != "spec.toml":  # the test's own spec names the variable only
            found[str(path.relative_to(tmp_path))] = leaks(path.read_bytes())
    found["logs"] = leaks(caplog.text)  # messages and formatted tracebacks
    found["stdout"] = leaks(out.out)
    found["stderr"] = leaks(out.err)
    hits = {where: n for where, n in found.items() if n}
    assert hits == {}, f"{mode}: {sum(hits.values())} leaks: {hits}"
    assert (tmp_path / "run" / "manifest.json").is_file()
    if mode == "fatal401":
        assert rc == 2 and "HTTP 401" in out.err and "[redacted]" in out.err
    else:
        assert rc == 0
        assert (tmp_path / "report.md").is_file()


def test_scrub_replaces_values_and_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.core import secrets

    monkeypatch.setenv("OPENAI_API_KEY", "abcdefghijklmnop1234")
    monkeypatch.setenv(ENV, KEY)
    secrets.register_variable(ENV)
    text = (
        f"a {KEY} b abcdefghijklmnop1234 c sk-proj-AAAAAAAAAAAA d Bearer xyz.123 "
        "e hf_abcdefghijklmnopqrstu f api_key=zzzzzzzz9"
    )
    out = secrets.scrub(text)
    for s in (KEY, "abcdefghijklmnop1234", "sk-proj-A", "xyz.123", "hf_abcdefghij", "zzzzzzzz9"):
        assert s not in out, (s, out)
    assert out.startswith("a [redacted] b [redacted] c [redacted] d Bearer [redacted] e ")
    assert secrets.scrub("EMPTY short words stay") == "EMPTY short words stay"
    nested = secrets.scrub_data({"reason": f"key {KEY}", "list": [KEY, 1, None]})
    assert nested == {"reason": "key [redacted]", "list": ["[redacted]", 1, None]}
