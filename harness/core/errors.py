"""Every error a user can cause, under one base class the CLI turns into one line.

A user error names the file, line or field at fault and says what to do about it; the
CLI prints it as ``error: <message>`` and exits 2 (``--debug`` shows the traceback). A
plug-in that wants its failure shown the same way raises one of these (or a subclass).
Anything else escaping a command is a bug in the harness or a plug-in.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """An error the user can fix from its message alone."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without calling __init__, whose arguments subclasses choose: the error
        # crosses processes as it is (the overlapped scoring process, Ray actors).
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


def _rebuilt(cls: type[UserError], args: tuple[Any, ...], state: dict[str, Any]) -> UserError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class SpecError(UserError, ValueError):
    """One or more problems in a spec, each with its field path and a fix."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in the spec:"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


class ModelLoadError(UserError, RuntimeError):
    """A model (or its config) that cannot be read, or an architecture we cannot steer."""


class StoreError(UserError, RuntimeError):
    """A damaged record store (a bad line that is not a torn tail)."""


class AnalysisError(UserError, ValueError):
    """Score records that cannot be analysed (missing fields, no baseline)."""


class SearchError(UserError, RuntimeError):
    """A coefficient search that cannot run as specified."""


class ValidationError(UserError, ValueError):
    """A scorer spec or gold file for ``validate-scorer`` that cannot be used."""


class PromptSetError(UserError, ValueError):
    """A prompt file or dataset that cannot be read as prompts."""


class VectorFileError(UserError, ValueError):
    """A steering-vector file or contrastive-pair file that cannot be used."""


class ModelNotRestoredError(UserError, RuntimeError):
    """A steering method left the model changed after its condition."""


class LocateError(UserError, ValueError):
    """A localisation (``steer-harness locate``) that cannot run as asked."""


class EngineError(UserError, RuntimeError):
    """A generation engine that cannot start, or a task that failed on every worker tried."""


class PromptTooLongError(UserError, ValueError):
    """A prompt plus ``max_new_tokens`` does not fit in the model's positions."""
