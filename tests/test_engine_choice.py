"""Choosing the generation engine: the spec section, the CLI overrides, and a missing Ray.

Needs no Ray: these run in every install (the Ray engine itself: test_ray_engine.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.core.errors import SpecError
from harness.run import engines
from harness.run.engines.local import LocalEngine
from harness.run.runner import Overrides, open_plan


def hide_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    real = engines.find_spec
    monkeypatch.setattr(engines, "find_spec", lambda name: None if name == "ray" else real(name))


def test_default_engine_is_local_and_the_cli_overrides_the_spec(make_spec):
    spec = make_spec()
    plan, _ = open_plan(spec)
    assert plan.spec.execution.engine == "local"
    plan, _ = open_plan(spec, Overrides(engine="ray", address="10.0.0.1:6379", workers=3))
    ex = plan.spec.execution
    assert (ex.engine, ex.address, ex.workers) == ("ray", "10.0.0.1:6379", 3)
    assert ex.num_cpus == 1.0 and ex.max_retries == 3 and ex.num_gpus is None
    args = cli.build_parser().parse_args(["run", str(spec), "--engine", "ray", "--workers", "2"])
    assert (args.engine, args.workers, args.address) == ("ray", 2, None)


def test_the_engine_does_not_enter_the_ids(make_spec):
    local, _ = open_plan(make_spec())
    ray, _ = open_plan(make_spec(extra='\n[execution]\nengine = "ray"\nworkers = 4\n'))
    assert [it.id for it in ray.items] == [it.id for it in local.items]


def test_bad_execution_fields_name_the_field(make_spec):
    with pytest.raises(SpecError, match=r"execution\.engine"):
        open_plan(make_spec(extra='\n[execution]\nengine = "spark"\n'))
    with pytest.raises(SpecError, match=r"execution\.num_gpus"):
        open_plan(make_spec(extra='\n[execution]\nengine = "ray"\nnum_gpus = -1\n'))
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "x.toml", "--workers", "0"])


def test_check_and_run_say_to_install_the_extra_when_ray_is_missing(
    make_spec, monkeypatch, capsys, tmp_path: Path
):
    hide_ray(monkeypatch)
    spec = make_spec(extra='\n[execution]\nengine = "ray"\n')
    assert cli.main(["check", str(spec)]) == 2
    out, err = capsys.readouterr()
    assert "engine: ray" in out
    assert "pip install 'steer-harness[ray]'" in err and "Traceback" not in err
    assert cli.main(["generate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'steer-harness[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "generations.jsonl").exists()
    # The local engine needs no Ray: check passes with the override.
    assert cli.main(["check", str(make_spec())]) == 0


def test_the_local_engine_is_the_default_engine(make_spec):
    plan, _ = open_plan(make_spec())
    engine = engines.open_engine(
        plan.spec.execution, plan.spec.model, plan.spec.generation, plan.conditions, lambda: None
    )
    assert isinstance(engine, LocalEngine)


class FakeRay:
    """Just what :meth:`ActorPool.start` asks of Ray: a cluster of some GPUs and CPUs."""

    def __init__(self, gpus: float, cpus: float = 16):
        self.resources = {"GPU": gpus, "CPU": cpus} if gpus else {"CPU": cpus}
        self.remote_options: dict[str, float] = {}

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return self.resources

    def nodes(self) -> list[dict[str, object]]:
        return [{"Alive": True}, {"Alive": False}]  # one live node, one lost

    def remote(self, **options: float):  # type: ignore[no-untyped-def]
        self.remote_options = options
        return lambda body: body


def sized(monkeypatch, gpus: float, execution: dict, model: dict):  # type: ignore[no-untyped-def]
    """A Ray generation engine sized on a fake cluster: (GPUs per actor, actors, options)."""
    import sys

    from harness.config.spec import ExecutionSpec, GenerationSpec, ModelSpec
    from harness.run.engines.ray_engine import RayEngine

    fake = FakeRay(gpus)
    monkeypatch.setitem(sys.modules, "ray", fake)
    engine = RayEngine(
        ExecutionSpec(engine="ray", **execution),
        ModelSpec(id="m", **model),
        GenerationSpec(),
        [],
    )
    return engine.num_gpus, engine.workers, fake.remote_options


def test_vllm_actors_reserve_their_tensor_parallel_gpus(monkeypatch):
    from harness.core.errors import EngineError

    vllm = {"backend": "vllm", "tensor_parallel_size": 2}
    # vLLM splits the model over tensor_parallel_size GPUs: each actor reserves them all.
    assert sized(monkeypatch, 8, {}, vllm) == (
        2.0,
        4,
        {"num_cpus": 1.0, "num_gpus": 2.0, "max_restarts": 0, "max_task_retries": 0},
    )
    assert sized(monkeypatch, 8, {}, {"backend": "vllm"})[:2] == (1.0, 8)
    assert sized(monkeypatch, 8, {}, {})[:2] == (1.0, 8)  # HF: one GPU each
    # The user's num_gpus wins, on either backend.
    assert sized(monkeypatch, 8, {"num_gpus": 4}, vllm)[:2] == (4.0, 2)
    assert sized(monkeypatch, 8, {"num_gpus": 0.5}, {})[:2] == (0.5, 16)
    # No GPUs: CPU actors, sized by CPUs for HF; vLLM's CPU build binds every core of its
    # node, so one vLLM actor per live node unless workers says otherwise.
    assert sized(monkeypatch, 0, {"num_cpus": 4}, {})[:2] == (0.0, 4)
    assert sized(monkeypatch, 0, {"num_cpus": 4}, vllm)[:2] == (0.0, 1)
    assert sized(monkeypatch, 0, {"num_cpus": 4, "workers": 3}, vllm)[:2] == (0.0, 3)
    with pytest.raises(EngineError, match=r"model\.tensor_parallel_size: 4 GPU\(s\) per actor"):
        sized(monkeypatch, 2, {}, {"backend": "vllm", "tensor_parallel_size": 4})
