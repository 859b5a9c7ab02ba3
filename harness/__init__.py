"""steer-harness: benchmark language-model steering with paired, seeded generations,
pluggable scorers and honest effect sizes.

The flow is one-way: spec -> work items -> generations.jsonl -> scores.jsonl ->
analysis.json -> report. Each stage reads only the records of the stage before it.
"""

__version__ = "0.1.0"
