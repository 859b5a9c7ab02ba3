"""Statistics for paired baseline/steered comparisons (pure functions on arrays).

One *comparison* record is produced per (condition, scorer, metric) versus a baseline by
:func:`compare_paired`; :func:`finalize` then adjusts p-values over the whole family of
comparisons in one output and adds the verdict. Records are plain dicts of Python
floats/ints/bools/None/str/lists whose keys are :data:`FIELDS`, in that order, and always
survive ``json.dumps(record, allow_nan=False)``.

Input convention: arrays aligned over the union of (prompt_id, seed) keys; a missing
score is NaN (``None`` is converted to NaN). A *pair* is complete when both sides are
finite; other pairs are dropped and counted. Below, n = complete pairs,
b = baseline scores, s = steered scores, diff = s - b (per pair), SD = sample standard
deviation (ddof = 1).

Field definitions
=================

=================  ========================================================  =======================
field              definition                                                reference
=================  ========================================================  =======================
condition,         passed through (baseline = the baseline condition's
baseline, scorer,  name)
metric
n                  number of complete pairs
n_dropped          pairs with a non-finite value on either side (a note
                   breaks them down into missing/NaN and infinite, per
                   side)
n_prompts          distinct prompt ids among the complete pairs
mean_baseline,     mean(b), mean(s), mean(s) - mean(b); given whenever n >=
mean_steered,      1
delta
cohens_d           (mean(s) - mean(b)) / s_p with s_p = sqrt(((n-1)·SD(s)²   Cohen (1988)
                   + (n-1)·SD(b)²) / (2n - 2)); general n1, n2 in
                   cohens_d()
d_ci_low,          95% noncentral-t CI: t = d·sqrt(n1·n2/(n1+n2)), df =      Steiger & Fouladi
d_ci_high          n1+n2-2; δ_lo, δ_hi solve nct.cdf(t; df, δ) = 0.975 and   (1997); Cumming & Finch
                   0.025; CI = δ / sqrt(n1·n2/(n1+n2)), here n1 = n2 = n     (2001)
hedges_g           cohens_d × J(df), J = Γ(df/2) /                           Hedges & Olkin (1985)
                   (sqrt(df/2)·Γ((df-1)/2)), df = 2n - 2 (log-gamma)
d_z                mean(diff) / SD(diff)                                     Lakens (2013)
p_paired_t         two-sided paired t-test on diff                           Student (1908)
p_welch            two-sided Welch t-test, s vs. b as independent samples    Welch (1947)
p_wilcoxon         two-sided signed-rank test on diff, zero differences      Wilcoxon (1945)
                   dropped, normal approximation z = (R+ - n'(n'+1)/4) /
                   sqrt(n'(n'+1)(2n'+1)/24 - Σ(t³-t)/48) with n' nonzero
                   differences and t the tie-group sizes of |diff|; no
                   continuity correction
p_holm             Holm step-down adjustment of p_paired_t over the          Holm (1979)
                   comparisons passed to finalize() that have a p-value
p_bh               Benjamini-Hochberg adjustment of p_paired_t, same family  Benjamini & Hochberg
                                                                             (1995)
seeds              sorted distinct seed values in the input (also seeds
                   whose pairs were all dropped)
seed_n             complete pairs per seed (same order)
seed_d             cohens_d of each seed's pairs alone; null with < 2 pairs  Cohen (1988)
                   or zero variance
seed_sd_d          SD of the defined seed_d values (null with < 2)
meta_estimate,     DerSimonian-Laird random-effects pooling of the defined   DerSimonian & Laird
meta_ci_low,       seed_d with v_i = (n1+n2)/(n1·n2) + d_i²/(2(n1+n2)), n1   (1986); Hedges & Olkin
meta_ci_high,      = n2 = m_i (the seed's pairs); τ² = max(0, (Q-(k-1)) /    (1985)
meta_tau2          (Σw - Σw²/Σw)); CI = estimate ± 1.959964·SE; needs k >=
                   2 seeds
meta_i2            I² = max(0, (Q - (k-1))/Q)·100, percent; 0 when Q = 0     Higgins & Thompson
                                                                             (2002)
mixed_estimate,    condition coefficient (0 = baseline, 1 = steered) and     Patterson & Thompson
mixed_se           its SE in score ~ condition + (1 | prompt_id), REML, on   (1971); Bates et al.
                   2n rows (a baseline and a steered row per pair; all       (2015); statsmodels
                   seeds of a prompt share one intercept)                    MixedLM
mixed_method,      optimiser whose fit passed the convergence checks (see
mixed_converged    harness.stats.mixed); whether any fit passed
boot_ci_low,       95% percentile interval of cohens_d over                  Davison & Hinkley
boot_ci_high       cluster-bootstrap resamples of prompts (a prompt's seeds  (1997); Field & Welsh
                   stay together); RNG protocol in harness.stats.bootstrap   (2007)
boot_resamples,    resamples drawn (default 2000); resamples dropped
boot_dropped,      because their d was undefined; the RNG seed
boot_seed
power              power of a two-sided paired t-test (α = 0.05) with n      Cohen (1988)
                   pairs at the observed |d_z| (statsmodels TTestPower);
                   see the post-hoc caveat in harness.stats.power
n_needed           smallest n with power >= 0.8 at the observed |d_z|
underpowered       power < 0.8
size_class         by |cohens_d|: < 0.2 negligible, < 0.5 small, < 0.8       Cohen (1988)
                   medium, else large
significant_holm   p_holm < 0.05                                             Holm (1979)
seeds_same_sign,   seeds whose d has the sign of meta_estimate (of cohens_d
seeds_total        when the meta is null); seeds with a defined d
verdict            one line, e.g. "medium effect (d = 0.62), significant
                   after Holm (p = 0.003), same sign in 5/5 seeds (I² =
                   12%)", plus "underpowered (...)" when flagged
reasons            {field: why} for every null scalar field (and seed_d
                   when an entry is null)
notes              general remarks: dropped pairs, seeds left out of the
                   meta, optimiser fallbacks, bootstrap drops, family size
=================  ========================================================  =======================

Degenerate data never raises and never yields NaN/inf: with n < 3 every effect size,
interval, test, per-seed d, meta, mixed, bootstrap and power field is null with reason
"fewer than 3 complete pairs (n=...)" (means are still given for n >= 1); zero variance in
both conditions nulls d, g and the d interval; zero SD of the differences nulls d_z and
p_paired_t; a seed with fewer than 2 pairs has a null seed_d. "Zero" SD means exactly
constant values, or an SD of at most 1e-10 × the largest |value| involved (that much
spread can only be floating-point rounding, e.g. ``(b + 0.1) - b``; dividing by it would
report d ~ 1e15). Scores above 1e150 in magnitude are treated like n < 3 (their squares
overflow), with their own reason. Misaligned inputs raise ``ValueError``.

Runtime: about 0.1 s per comparison at 100 pairs (20 prompts x 5 seeds), 0.4 s at 1,000
pairs; the mixed model dominates, then the 2,000-resample bootstrap.

References
----------
Bates, D., Mächler, M., Bolker, B. & Walker, S. (2015). Fitting linear mixed-effects
models using lme4. *J. Stat. Softw.* 67(1).
Benjamini, Y. & Hochberg, Y. (1995). *J. R. Statist. Soc. B* 57, 289-300.
Cohen, J. (1988). *Statistical Power Analysis for the Behavioral Sciences*, 2nd ed.
Cumming, G. & Finch, S. (2001). *Educ. Psychol. Meas.* 61, 532-574.
Davison, A. C. & Hinkley, D. V. (1997). *Bootstrap Methods and their Application*.
DerSimonian, R. & Laird, N. (1986). *Controlled Clinical Trials* 7, 177-188.
Field, C. A. & Welsh, A. H. (2007). *J. R. Statist. Soc. B* 69, 369-390.
Hedges, L. V. & Olkin, I. (1985). *Statistical Methods for Meta-Analysis*.
Higgins, J. P. T. & Thompson, S. G. (2002). *Statistics in Medicine* 21, 1539-1558.
Hoenig, J. M. & Heisey, D. M. (2001). The abuse of power. *Am. Stat.* 55, 19-24.
Holm, S. (1979). *Scand. J. Statist.* 6, 65-70.
Lakens, D. (2013). *Frontiers in Psychology* 4, 863.
Patterson, H. D. & Thompson, R. (1971). *Biometrika* 58, 545-554.
Steiger, J. H. & Fouladi, R. T. (1997). In *What If There Were No Significance Tests?*
Welch, B. L. (1947). *Biometrika* 34, 28-35.
Wilcoxon, F. (1945). *Biometrics Bulletin* 1, 80-83.

Classification metrics on predicted labels (accuracy, precision, recall, F1 per label and
macro), McNemar's exact test on paired correctness and their paired text bootstrap are
defined, with references, in :mod:`harness.stats.confusion`.
"""

from ._common import finite_or_none
from .bootstrap import (
    BootResult,
    cluster_bootstrap,
    cluster_bootstrap_d,
    percentile_interval,
    resample_counts,
    resample_indices,
)
from .classification import auroc
from .comparison import FIELDS, NULLABLE_FIELDS, TARGET_POWER, compare_paired, finalize
from .confusion import (
    CountMetrics,
    Interval,
    McNemarResult,
    confusion_matrix,
    count_metrics,
    interval_of,
    mcnemar,
    paired_bootstrap,
)
from .correlation import krippendorff_alpha_interval, pearson, spearman
from .effect_size import cohens_d, cohens_d_ci, d_z, hedges_g, hedges_j, pooled_sd, size_class
from .meta import MetaResult, d_sampling_variance, dersimonian_laird
from .mixed import DEFAULT_MIXED_METHODS, MixedResult, condition_effect_mixed
from .power import achieved_power, pairs_needed
from .significance import adjust_bh, adjust_holm, paired_t_p, welch_p, wilcoxon_p
from .verdict import verdict_fields

__all__ = [
    "DEFAULT_MIXED_METHODS",
    "FIELDS",
    "NULLABLE_FIELDS",
    "TARGET_POWER",
    "BootResult",
    "CountMetrics",
    "Interval",
    "McNemarResult",
    "MetaResult",
    "MixedResult",
    "achieved_power",
    "adjust_bh",
    "adjust_holm",
    "auroc",
    "cluster_bootstrap",
    "cluster_bootstrap_d",
    "cohens_d",
    "cohens_d_ci",
    "compare_paired",
    "condition_effect_mixed",
    "confusion_matrix",
    "count_metrics",
    "d_sampling_variance",
    "d_z",
    "dersimonian_laird",
    "finalize",
    "finite_or_none",
    "hedges_g",
    "hedges_j",
    "interval_of",
    "krippendorff_alpha_interval",
    "mcnemar",
    "paired_bootstrap",
    "paired_t_p",
    "pairs_needed",
    "pearson",
    "percentile_interval",
    "pooled_sd",
    "resample_counts",
    "resample_indices",
    "size_class",
    "spearman",
    "verdict_fields",
    "welch_p",
    "wilcoxon_p",
]
