"""Scorer validation — how good is a scorer? Score gold-labelled texts and report
standard metrics with confidence intervals.

``steer-harness validate-scorer SCORER DATA`` runs any scorer (a spec file with a
``[scorer]`` table, or a registered name with default params) on a JSONL file of texts
with gold labels or gold ratings, and writes JSON and markdown.

Data: one JSON object per line with ``text`` and either ``label`` (a class name: the
*labels* mode) or ``rating`` (a number, e.g. 0-100: the *ratings* mode); ``id`` and
``trait`` are optional. Shipped: ``labels/emotions.jsonl`` (210 texts, 7 labels) and
``labels/ratings.jsonl`` (60 fear ratings), see ``prompts/README.md``.

Labels mode
-----------
Gold labels L (in order of first appearance). Each label needs a scorer metric of the same
name; at most one label may lack one (the *none label*, e.g. ``neutral`` for the lexicon,
chosen automatically or with ``--none-label``): it is predicted when every other label's
score is <= 0 (no evidence for any of them). Prediction = argmax of the scores of the
labels in L (other metrics are ignored); ties go to the earlier label in L. A text with a
null score on any of these metrics is left out and counted (``n_unscored``).

- accuracy = mean(pred == gold);
- per label: precision TP/(TP+FP), recall TP/(TP+FN), F1 = 2TP/(2TP+FP+FN);
  macro-F1 = unweighted mean of the per-label F1 over L (Sokolova & Lapalme 2009); a
  label with 2TP+FP+FN = 0 (absent from a bootstrap resample and never predicted) is left
  out of that mean;
- AUROC per label (one-vs-rest, the label's own score): the Mann-Whitney form
  AUC = (R+ - n+(n+ + 1)/2) / (n+ · n-) with R+ the sum of the positives' mid-ranks among
  all texts, i.e. P(score of a positive > score of a negative) + 0.5 P(tie) (Mann & Whitney
  1947; Hanley & McNeil 1982). Null for the none label (no score) and when a class is
  empty.

Ratings mode
------------
The scorer metric named by ``--metric`` (default: the records' ``trait``) against the
gold rating, over texts with a non-null score: Spearman's ρ (Pearson's r of mid-ranks;
Spearman 1904) and Pearson's r (Pearson 1896).

Confidence intervals
--------------------
Percentile bootstrap over texts (Efron & Tibshirani 1993, ch. 13), 95%, exactly:
``rng = np.random.default_rng(seed)``; ``idx = rng.integers(0, n, size=(B, n))`` over the n
scored texts in file order; row r is resample r (texts drawn with replacement, a text drawn
twice counted twice, ties in the ranks of a resample get mid-ranks); a statistic undefined
on a resample (no positive or no negative for an AUROC, constant values for a
correlation) drops that resample for that statistic, counted in ``dropped``;
``np.percentile(values, [2.5, 97.5])`` with linear interpolation. Defaults: B = 2000,
seed 0. The texts are treated as independent (they are: one gold item each).

References: Efron, B. & Tibshirani, R. J. (1993), An Introduction to the Bootstrap;
Mann, H. B. & Whitney, D. R. (1947), Ann. Math. Statist. 18, 50-60; Hanley, J. A. &
McNeil, B. J. (1982), Radiology 143, 29-36; Sokolova, M. & Lapalme, G. (2009), Inf.
Process. Manag. 45, 427-437; Spearman, C. (1904); Pearson, K. (1896).
"""

from harness.validate.run import validate_scorer

__all__ = ["validate_scorer"]
