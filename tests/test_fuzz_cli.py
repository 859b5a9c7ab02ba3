"""The CLI over generated bad inputs: never a traceback, exit 2 with a message, records intact.

Hypothesis draws specs, prompt files, pair files, lexicon files, foreign ``scores.jsonl``
files and damaged run artefacts (``manifest.json``, ``spec.json``, ``analysis.json``, store
lines without ``text``, non-UTF-8 bytes, ``output_dir`` naming a file) and drives
:func:`harness.cli.main` in process on each. Every outcome must be exit 0 (a valid input)
or exit 2 with an ``error:`` line (argparse's own usage errors exit 2 too); an exception
escaping ``main`` is a traceback; the bytes of the stores that existed before the command
must still be there afterwards (a store may only grow).

No model generates inside the loop: one tiny finished run is built per module and copied.
Set ``FUZZ_TALLY=1`` to count outcomes instead of failing on the first (the figures in the
issue's closing note); the totals are printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from small_run import build_finished_run

from harness.cli import main

TALLY = os.environ.get("FUZZ_TALLY") == "1"
COUNTS: dict[str, dict[str, int]] = {}
FAILURES: list[str] = []


def _settings(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# --- what the inputs are made of ---------------------------------------------------------

NASTY_TEXT = [
    "",
    " ",
    "../../x",
    "../escape",
    "/tmp/abs-x",
    "a/../../b",
    "nan",
    "inf",
    "-1",
    "1e999",
    "true",
    "8",
    "x|y",
    "<b>bold</b>",
    "[link](javascript:x)",
    "line\nbreak",
    "tab\there",
    "\x00nul",
    "é😀",
    "on",
    "fear",
    "lexicon/fear",
    "lexicon/fera",
    "activation",
    "prompt",
    "baseline",
    "a" * 300,
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2**63, 2**63 - 1, -(2**63) - 1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0])
    | st.sampled_from(NASTY_TEXT)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["text", "id", "x", "value", "seed"]) | st.text(max_size=6),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)
raw_bytes = st.binary(max_size=200) | st.sampled_from(
    [b"\xff\xfe\x00bad", b"\x80\x81\n", b'{"a": 1}\n\xc3\x28\n', b"", b"\n\n", b"[1, 2]\n"]
)


def _base_spec(model_dir: Path, prompts: Path) -> dict[str, Any]:
    return {
        "name": "fz",
        "description": "fuzzed",
        "model": {"id": str(model_dir), "device": "cpu"},
        "prompts": {"file": str(prompts)},
        "generation": {"max_new_tokens": 4, "temperature": 0.7, "batch_size": 4, "seeds": [0, 1]},
        "conditions": [
            {
                "name": "act",
                "method": "activation",
                "params": {"layers": [1], "coefficient": 4.0, "vector": {"pairs": "fear"}},
            },
            {"name": "persona", "method": "prompt", "params": {"instruction": "be afraid ."}},
        ],
        "scorers": [{"type": "lexicon"}],
        "analysis": {"bootstrap_resamples": 20},
    }


SPEC_PATHS: list[tuple[Any, ...]] = [
    ("name",),
    ("description",),
    ("output_dir",),
    ("model", "id"),
    ("model", "chat_template"),
    ("model", "dtype"),
    ("model", "trust_remote_code"),
    ("prompts", "file"),
    ("prompts", "limit"),
    ("prompts", "text_field"),
    ("generation", "max_new_tokens"),
    ("generation", "temperature"),
    ("generation", "top_p"),
    ("generation", "top_k"),
    ("generation", "batch_size"),
    ("generation", "seeds"),
    ("generation", "seeds", 0),
    ("generation", "sampling"),
    ("conditions", 0, "name"),
    ("conditions", 0, "method"),
    ("conditions", 0, "params"),
    ("conditions", 0, "params", "coefficient"),
    ("conditions", 0, "params", "layers"),
    ("conditions", 0, "params", "vector"),
    ("conditions", 0, "params", "vector", "pairs"),
    ("conditions", 0, "sweep"),
    ("conditions", 1, "name"),
    ("conditions", 1, "params", "instruction"),
    ("conditions",),
    ("scorers", 0, "type"),
    ("scorers", 0, "name"),
    ("scorers", 0, "params"),
    ("scorers",),
    ("analysis", "bootstrap_resamples"),
    ("analysis", "bootstrap_seed"),
    ("analysis", "coherence_threshold"),
    ("report", "path"),
    ("report", "samples"),
    ("split", "selection_fraction"),
    ("baseline",),
    ("unknown_key",),
]


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    for part in path[:-1]:
        try:
            doc = doc[part]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if isinstance(doc, dict) or (
        isinstance(doc, list) and isinstance(last, int) and last < len(doc)
    ):
        if delete:
            with contextlib.suppress(KeyError, IndexError):
                del doc[last]
        else:
            doc[last] = value


# --- one CLI call, judged ----------------------------------------------------------------


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _snapshot(stores: list[Path]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in stores if p.is_file()}


ERROR_LINE = re.compile(r"^(error: |steer-harness( [a-z-]+)?: error: )")


def drive(
    group: str,
    argv: list[str],
    work: Path,
    stores: Sequence[Path] = (),
    invalid: bool = False,
) -> None:
    """Run the CLI once and judge it (``invalid``: the input must be refused, exit 2); in
    tally mode count instead of failing."""
    before = _snapshot(list(stores))
    out, err = io.StringIO(), io.StringIO()
    traceback = None
    with _cwd(work), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2 with their message
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:
            rc, traceback = -1, f"{type(exc).__name__}: {exc}"
    text = err.getvalue()
    if traceback is None and "Traceback (most recent call last)" in text:
        traceback = "traceback printed"
    damaged = [
        str(p) for p, old in before.items() if not (p.is_file() and p.read_bytes().startswith(old))
    ]
    problems = []
    if traceback is not None:
        problems.append(f"traceback {traceback}")
    elif rc not in (0, 2):
        problems.append(f"exit {rc}")
    elif invalid and rc != 2:
        problems.append(f"accepted an invalid input (exit {rc})")
    elif rc == 2:
        errors = [ln for ln in text.splitlines() if ERROR_LINE.match(ln)]
        if len(errors) != 1:
            problems.append(f"exit 2 without one error line: {text!r}")
    if damaged:
        problems.append(f"records changed: {damaged}")
    tally = COUNTS.setdefault(group, {"inputs": 0, "tracebacks": 0, "damaged": 0, "other": 0})
    tally["inputs"] += 1
    tally["tracebacks"] += traceback is not None
    tally["damaged"] += bool(damaged)
    tally["other"] += bool(problems) and traceback is None and not damaged
    if problems:
        msg = f"{group} {argv}: {'; '.join(problems)}"
        FAILURES.append(msg)
        if not TALLY:
            raise AssertionError(msg)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_finished_run(tiny_model_dir, tmp_path_factory.mktemp("fuzz-finished"))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cwd")


@pytest.fixture(scope="module", autouse=True)
def _fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Figures are built but not rasterised (PNG encoding is most of a report's time and
    reads no input); objects alive now are left out of garbage collection passes."""
    import matplotlib.pyplot as plt

    from harness.report import plots

    real = plots.save_figure

    def save_figure(fig: Any, path: Path) -> Path:
        path.write_bytes(b"\x89PNG fuzz placeholder")
        plt.close(fig)
        return path

    plots.save_figure = save_figure  # type: ignore[assignment]
    gc.freeze()
    yield
    gc.unfreeze()
    plots.save_figure = real  # type: ignore[assignment]


@pytest.fixture(scope="module", autouse=True)
def _report_tally() -> Iterator[None]:
    yield
    if COUNTS:
        total = {k: sum(c[k] for c in COUNTS.values()) for k in ("inputs", "tracebacks", "damaged")}
        print(f"\nfuzz tally {json.dumps(COUNTS)} total {json.dumps(total)}")
        for line in FAILURES[:80]:
            print("  " + line[:300])


def _fresh(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def _write_spec(folder: Path, doc: dict[str, Any], fmt: str) -> Path:
    if fmt == "json":
        path = folder / "spec.json"
        path.write_text(json.dumps(doc))
    else:
        path = folder / "spec.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def _prompts(folder: Path) -> Path:
    path = folder / "prompts.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"p{i}", "text": f"tell me {i} ."}) + "\n" for i in range(3))
    )
    return path


# --- the groups --------------------------------------------------------------------------


@_settings(300)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(SPEC_PATHS), values, st.booleans()), min_size=1, max_size=3
    ),
    fmt=st.sampled_from(["json", "yaml"]),
)
def test_fuzz_specs(tiny_model_dir: Path, work: Path, edits: Any, fmt: str) -> None:
    folder = _fresh("fz-spec-")
    doc = _base_spec(tiny_model_dir, _prompts(folder))
    for path, value, delete in edits:
        _set(doc, path, value, delete and len(path) > 1)
    try:
        spec = _write_spec(folder, doc, fmt)
    except (ValueError, yaml.YAMLError, UnicodeEncodeError):
        return  # not representable in this format
    drive("specs", ["check", str(spec)], work)
    shutil.rmtree(folder, ignore_errors=True)


@_settings(40)
@given(data=raw_bytes, suffix=st.sampled_from([".toml", ".yaml", ".json"]))
def test_fuzz_spec_bytes(work: Path, data: bytes, suffix: str) -> None:
    folder = _fresh("fz-specb-")
    spec = folder / f"s{suffix}"
    spec.write_bytes(data)
    drive("specs", ["check", str(spec)], work)
    shutil.rmtree(folder, ignore_errors=True)


prompt_lines = st.lists(
    st.one_of(
        st.fixed_dictionaries({"id": values, "text": values}).map(json.dumps),
        st.fixed_dictionaries({"text": st.text(min_size=1, max_size=20)}).map(json.dumps),
        values.map(lambda v: json.dumps(v)),
        st.sampled_from(["", "not json", '{"text": "a"', "\u00e9\u00e8"]),
    ),
    min_size=0,
    max_size=5,
)


@_settings(150)
@given(
    lines=prompt_lines,
    tail=raw_bytes,
    suffix=st.sampled_from([".jsonl", ".csv", ".tsv", ".txt"]),
    extra=st.sampled_from([{}, {"id_field": "id"}, {"text_field": "x"}, {"limit": 2}]),
)
def test_fuzz_prompt_files(
    tiny_model_dir: Path, work: Path, lines: list[str], tail: bytes, suffix: str, extra: Any
) -> None:
    folder = _fresh("fz-prompts-")
    pfile = folder / f"prompts{suffix}"
    body = "\n".join(lines).encode("utf-8", "surrogatepass")
    if suffix in (".csv", ".tsv"):
        body = b"id,text\n" + body
    pfile.write_bytes(body + (tail if len(tail) % 2 else b""))
    doc = _base_spec(tiny_model_dir, pfile)
    doc["prompts"].update(extra)
    drive("prompt files", ["check", str(_write_spec(folder, doc, "json"))], work)
    shutil.rmtree(folder, ignore_errors=True)


pair_lines = st.lists(
    st.one_of(
        st.fixed_dictionaries({"positive": values, "negative": values}).map(json.dumps),
        st.fixed_dictionaries(
            {"id": values, "positive": st.text(max_size=10), "negative": st.text(max_size=10)}
        ).map(json.dumps),
        values.map(lambda v: json.dumps(v)),
        st.sampled_from(["", "[", '{"positive": "a"}']),
    ),
    max_size=4,
)


@_settings(120)
@given(lines=pair_lines, tail=raw_bytes, where=st.sampled_from(["params", "library"]))
def test_fuzz_pair_files(
    tiny_model_dir: Path, work: Path, lines: list[str], tail: bytes, where: str
) -> None:
    folder = _fresh("fz-pairs-")
    pfile = folder / "pairs.jsonl"
    pfile.write_bytes(
        "\n".join(lines).encode("utf-8", "surrogatepass") + (tail if len(tail) % 3 == 0 else b"")
    )
    doc = _base_spec(tiny_model_dir, _prompts(folder))
    if where == "params":
        doc["conditions"][0]["params"]["vector"] = {"pairs": "pairs.jsonl"}
    else:
        doc["vectors"] = {"v": {"pairs": "pairs.jsonl", "layers": [1]}}
        doc["conditions"][0]["params"]["vector"] = "v"
    drive("pair files", ["check", str(_write_spec(folder, doc, "json"))], work)
    shutil.rmtree(folder, ignore_errors=True)


lexicon_csv = st.lists(
    st.tuples(st.text(max_size=6), st.text(max_size=6), scalars.map(str)).map(
        lambda t: ",".join(x.replace(",", ";").replace("\n", " ") for x in t)
    ),
    max_size=4,
).map(lambda rows: "term,category,weight\n" + "\n".join(rows))
lexicon_json = values.map(lambda v: json.dumps(v))


@_settings(120)
@given(
    kind=st.sampled_from([".csv", ".json", ".tsv", ".txt"]),
    csv_body=lexicon_csv,
    json_body=lexicon_json,
    tail=raw_bytes,
    categories=st.none() | st.lists(st.sampled_from(["fear", "joy", "x", ""]), max_size=2),
)
def test_fuzz_lexicon_files(
    tiny_model_dir: Path,
    work: Path,
    kind: str,
    csv_body: str,
    json_body: str,
    tail: bytes,
    categories: Any,
) -> None:
    folder = _fresh("fz-lex-")
    lex = folder / f"lex{kind}"
    body = json_body if kind == ".json" else csv_body.replace(",", "\t" if kind == ".tsv" else ",")
    lex.write_bytes(body.encode("utf-8", "surrogatepass") + (tail if len(tail) % 4 == 1 else b""))
    doc = _base_spec(tiny_model_dir, _prompts(folder))
    params: dict[str, Any] = {"lexicon": lex.name}
    if categories is not None:
        params["categories"] = categories
    doc["scorers"] = [{"type": "lexicon", "params": params}]
    drive("lexicon files", ["check", str(_write_spec(folder, doc, "json"))], work)
    shutil.rmtree(folder, ignore_errors=True)


def _score_record(cond: str, prompt: int, seed: int, value: float) -> dict[str, Any]:
    return {
        "condition": cond,
        "prompt_id": f"p{prompt}",
        "seed": seed,
        "scorer": "s",
        "metric": "m",
        "value": value,
    }


FIELDS = ["condition", "prompt_id", "seed", "scorer", "metric", "value"]


def _valid_score(rec: Any) -> bool:
    """What ``analyze`` must accept of a foreign score record, and nothing else."""
    if not isinstance(rec, dict) or any(k not in rec for k in FIELDS):
        return False
    v, s = rec["value"], rec["seed"]
    value_ok = v is None or (
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    )
    seed_ok = isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 2**63 - 1
    pid = rec["prompt_id"]
    pid_ok = isinstance(pid, str) or (isinstance(pid, int) and not isinstance(pid, bool))
    texts_ok = all(isinstance(rec[k], str) for k in ("condition", "scorer", "metric"))
    return value_ok and seed_ok and pid_ok and texts_ok


@_settings(280)
@given(
    n_good=st.integers(0, 8),
    bad=st.lists(st.tuples(st.sampled_from([*FIELDS, "all"]), values, st.booleans()), max_size=3),
    junk=st.sampled_from([b"", b"\xff\xfe\n", b"[1]\n", b"not json\n", b"{}\n"]),
    boot=st.sampled_from(["20", "0", "-5", "x", "10"]),
)
def test_fuzz_foreign_scores(work: Path, n_good: int, bad: Any, junk: bytes, boot: str) -> None:
    folder = _fresh("fz-scores-")
    recs = [
        _score_record(c, p, s, float(p + s + (c == "steer")))
        for c in ("baseline", "steer")
        for p in range(max(1, n_good // 2))
        for s in range(2)
    ][: max(n_good, 2)]
    for field, value, delete in bad:
        rec = _score_record("steer", 0, 0, 1.0)
        if field == "all":
            rec = value  # type: ignore[assignment]
        elif delete:
            del rec[field]
        else:
            rec[field] = value
        recs.append(rec)
    lines, written = [], []
    for r in recs:
        try:
            lines.append(json.dumps(r).encode("utf-8", "surrogatepass") + b"\n")
        except (TypeError, ValueError):
            continue
        written.append(r)
    scores = folder / "scores.jsonl"
    scores.write_bytes(b"".join(lines) + junk)
    invalid = boot in ("-5", "x") or any(not _valid_score(r) for r in written)
    drive(
        "foreign scores",
        ["analyze", str(folder), "--bootstrap", boot],
        work,
        [scores],
        invalid=invalid or junk != b"",
    )
    shutil.rmtree(folder, ignore_errors=True)


ARTEFACTS = ["manifest.json", "spec.json", "analysis.json"]
COMMANDS = ["report", "analyze", "power", "compare", "check", "score"]


def _damage_json(doc: Any, path: list[str], value: Any, delete: bool) -> Any:
    if not path:
        return value
    cur = doc
    for part in path[:-1]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and cur:
            cur = cur[0]
        else:
            return doc
    if isinstance(cur, dict):
        if delete:
            cur.pop(path[-1], None)
        else:
            cur[path[-1]] = value
    elif isinstance(cur, list) and cur:
        cur[0] = value
    return doc


json_paths = st.sampled_from(
    [
        [],
        ["sessions"],
        ["sessions", "0", "status"],
        ["spec"],
        ["spec", "name"],
        ["spec", "report"],
        ["spec", "report", "path"],
        ["spec", "output_dir"],
        ["spec", "description"],
        ["spec", "conditions"],
        ["spec", "generation", "seeds"],
        ["base_dir"],
        ["comparisons"],
        ["comparisons", "0", "d"],
        ["comparisons", "0", "condition"],
        ["comparisons", "0", "n_pairs"],
        ["conditions"],
        ["baseline"],
        ["condition_info"],
        ["key"],
    ]
)


@_settings(60)
@given(
    artefact=st.sampled_from(ARTEFACTS),
    how=st.sampled_from(["bytes", "value", "edit"]),
    data=raw_bytes,
    path=json_paths,
    value=values,
    delete=st.booleans(),
    command=st.sampled_from(COMMANDS),
)
def test_fuzz_damaged_artefacts(
    finished: Path,
    work: Path,
    artefact: str,
    how: str,
    data: bytes,
    path: list[str],
    value: Any,
    delete: bool,
    command: str,
) -> None:
    folder = _fresh("fz-art-")
    run = folder / "run"
    shutil.copytree(finished, run)
    target = run / artefact
    if how == "bytes":
        target.write_bytes(data)
    else:
        doc = json.loads(target.read_text())
        doc = value if how == "value" else _damage_json(doc, path, value, delete)
        try:
            target.write_text(json.dumps(doc))
        except (TypeError, ValueError, UnicodeEncodeError):
            target.write_bytes(data)
    _run_command(command, run, folder, work)
    shutil.rmtree(folder, ignore_errors=True)


def _run_command(command: str, run: Path, folder: Path, work: Path) -> None:
    stores = [run / "generations.jsonl", run / "scores.jsonl"]
    argv = {
        "report": ["report", str(run), "--out", str(folder / "r.md")],
        "analyze": ["analyze", str(run), "--bootstrap", "20"],
        "power": ["power", str(run)],
        "compare": ["compare", str(run), "--out", str(folder / "c.md")],
        "check": ["check", str(run)],
        "score": ["score", str(run)],
    }[command]
    drive("run artefacts", argv, work, stores)


store_damage = st.sampled_from(
    [
        "no text",
        "no id",
        "non-utf8",
        "not an object",
        "bad json",
        "value text",
        "seed text",
        "seed null",
        "value list",
        "empty object",
    ]
)


@_settings(50)
@given(
    store=st.sampled_from(["generations.jsonl", "scores.jsonl"]),
    damage=store_damage,
    where=st.sampled_from(["first", "last"]),
    command=st.sampled_from(COMMANDS),
)
def test_fuzz_damaged_stores(
    finished: Path, work: Path, store: str, damage: str, where: str, command: str
) -> None:
    folder = _fresh("fz-store-")
    run = folder / "run"
    shutil.copytree(finished, run)
    target = run / store
    lines = target.read_bytes().splitlines(keepends=True)
    rec = json.loads(lines[0])
    raw: bytes
    if damage == "no text":
        rec.pop("text", None)
        rec.pop("value", None)
    elif damage == "no id":
        rec.pop("id", None)
    elif damage == "value text":
        rec["value" if "value" in rec else "text"] = "high"
    elif damage == "seed text":
        rec["seed"] = "3"
    elif damage == "seed null":
        rec["seed"] = None
    elif damage == "value list":
        rec["value" if "value" in rec else "text"] = [1, 2]
    elif damage == "empty object":
        rec = {}
    raw = {
        "non-utf8": b'{"id": "\xff\xfe"}\n',
        "not an object": b"[1, 2, 3]\n",
        "bad json": b'{"id": \n',
    }.get(damage, json.dumps(rec).encode() + b"\n")
    lines = [raw, *lines[1:]] if where == "first" else [*lines, raw]
    target.write_bytes(b"".join(lines))
    _run_command(command, run, folder, work)
    shutil.rmtree(folder, ignore_errors=True)


@_settings(20)
@given(command=st.sampled_from(["score", "run", "generate"]), as_flag=st.booleans())
def test_fuzz_output_dir_is_a_file(finished: Path, work: Path, command: str, as_flag: bool) -> None:
    folder = _fresh("fz-outfile-")
    blocker = folder / "not-a-dir"
    blocker.write_text("a file\n")
    spec_doc = json.loads((finished / "spec.json").read_text())["spec"]
    spec_doc["output_dir"] = str(blocker)
    spec_doc["report"]["path"] = str(folder / "r.md")
    spec = folder / "spec.json"
    spec.write_text(json.dumps(spec_doc))
    argv = [command, str(spec)] + (["--output-dir", str(blocker / "sub")] if as_flag else [])
    drive("run artefacts", argv, work, [blocker])
    shutil.rmtree(folder, ignore_errors=True)
