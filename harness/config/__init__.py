"""Configuration: the spec's pydantic models and loading (TOML/YAML/JSON), prompt sets,
steering-vector sources, sweep expansion, and where a spec's data files are found.

It turns user input into validated, typed objects and does nothing else: no model is
loaded here. It may import :mod:`harness.core` and the shipped data (:mod:`prompts`).
"""
