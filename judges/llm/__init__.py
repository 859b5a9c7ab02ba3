"""LLM judges: the ``judge`` scorer and its parts, one concern per module.

- :mod:`~judges.llm.rubric`: templates, placeholders, delimiting, truncation
- :mod:`~judges.llm.aggregation`: logprob expectation and sample mean
- :mod:`~judges.llm.providers`: OpenAI-compatible and Anthropic APIs
- :mod:`~judges.llm.hf`: a local Hugging Face model's number distribution
- :mod:`~judges.llm.cache`: the SQLite answer cache shared across runs
- :mod:`~judges.llm.retry`: backoff, jitter and Retry-After
- :mod:`~judges.llm.scorer`: the scorer that ties them together
"""

from judges.llm.scorer import JudgeParams, JudgeScorer

__all__ = ["JudgeParams", "JudgeScorer"]
