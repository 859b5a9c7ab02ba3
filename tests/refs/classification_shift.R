# Reference values for the classification-shift statistics (harness.stats.confusion,
# harness.analysis.shift), computed in R independently of the harness:
#   Rscript tests/refs/classification_shift.R tests/refs/classification_shift.json
# The inputs are written into the JSON beside the results, so the Python tests need no R
# (tests/test_shift_refs.py reads the JSON; it re-runs this script when Rscript exists).
# Needs: r-base-core, r-cran-jsonlite.
suppressMessages(library(jsonlite))
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "tests/refs/classification_shift.json"

set.seed(2026)
labels <- c("joy", "neutral", "sadness")
k <- length(labels)
n <- 60
gold <- sample(labels, n, replace = TRUE, prob = c(0.4, 0.4, 0.2))
onehot <- t(sapply(gold, function(g) as.numeric(labels == g)))
softmax <- function(z) { e <- exp(z - max(z)); e / sum(e) }
base_logit <- 1.5 * onehot + matrix(rnorm(n * k), n, k)
steer_logit <- base_logit + matrix(rep(c(0.9, 0, 0), each = n), n, k) +
  matrix(rnorm(n * k, sd = 0.3), n, k)
base_prob <- t(apply(base_logit, 1, softmax))
steer_prob <- t(apply(steer_logit, 1, softmax))
# round the inputs so that the JSON holds them exactly as R used them
base_prob <- round(base_prob, 12)
steer_prob <- round(steer_prob, 12)
base_pred <- labels[apply(base_prob, 1, which.max)]
steer_pred <- labels[apply(steer_prob, 1, which.max)]

# Precision, recall, F1 by hand; NA where undefined; macro = mean over defined labels.
prf <- function(gold, pred, labels) {
  res <- lapply(labels, function(l) {
    tp <- sum(gold == l & pred == l)
    np <- sum(pred == l)
    ng <- sum(gold == l)
    p <- if (np > 0) tp / np else NA
    r <- if (ng > 0) tp / ng else NA
    f <- if (np + ng > 0) 2 * tp / (np + ng) else NA
    list(precision = p, recall = r, f1 = f, support = ng, predicted = np)
  })
  names(res) <- labels
  get <- function(m) sapply(res, function(x) x[[m]])
  list(
    accuracy = mean(gold == pred),
    per_label = res,
    macro_precision = mean(get("precision"), na.rm = TRUE),
    macro_recall = mean(get("recall"), na.rm = TRUE),
    macro_f1 = mean(get("f1"), na.rm = TRUE)
  )
}

mcn <- function(base_ok, steer_ok) {
  b <- sum(base_ok & !steer_ok)
  c <- sum(!base_ok & steer_ok)
  tab <- matrix(c(sum(base_ok & steer_ok), c, b, sum(!base_ok & !steer_ok)), 2, 2)
  chi <- mcnemar.test(tab)  # continuity-corrected (R leaves it out when b == c)
  list(
    b = b, c = c, p_exact = binom.test(b, b + c, 0.5)$p.value,
    chi2 = unname(chi$statistic), p_chi2 = chi$p.value
  )
}

prob_tests <- function(sp, bp) {
  res <- lapply(seq_len(ncol(sp)), function(j) {
    d <- sp[, j] - bp[, j]
    list(
      label = labels[j], delta = mean(d), d_z = mean(d) / sd(d),
      p_paired_t = t.test(sp[, j], bp[, j], paired = TRUE)$p.value,
      p_wilcoxon = wilcox.test(sp[, j], bp[, j], paired = TRUE, exact = FALSE,
                               correct = FALSE)$p.value
    )
  })
  ps <- sapply(res, function(x) x$p_paired_t)
  holm <- p.adjust(ps, method = "holm")
  for (j in seq_along(res)) res[[j]]$p_holm <- holm[j]
  res
}

# A small fixed case with a label that is never predicted and one that is never gold.
small_gold <- c("joy", "joy", "neutral", "neutral", "fear", "joy", "neutral", "fear")
small_pred <- c("joy", "neutral", "neutral", "surprise", "joy", "joy", "neutral", "neutral")
small_labels <- c("joy", "neutral", "fear", "surprise", "anger")

fixed_bc <- list(c(0, 5), c(3, 10), c(7, 7), c(12, 30), c(1, 0), c(40, 61), c(1, 1))
fixed <- lapply(fixed_bc, function(bc) {
  b <- bc[1]; c <- bc[2]
  tab <- matrix(c(10, c, b, 10), 2, 2)
  chi <- mcnemar.test(tab)
  list(b = b, c = c, p_exact = binom.test(b, b + c, 0.5)$p.value,
       chi2 = unname(chi$statistic), p_chi2 = chi$p.value)
})

doc <- list(
  r_version = R.version.string,
  inputs = list(
    labels = labels, prompt_ids = sprintf("t%02d", seq_len(n)), gold = unname(gold),
    baseline_pred = base_pred, steered_pred = steer_pred,
    baseline_prob = unname(base_prob), steered_prob = unname(steer_prob)
  ),
  baseline = prf(gold, base_pred, labels),
  steered = prf(gold, steer_pred, labels),
  mcnemar = mcn(gold == base_pred, gold == steer_pred),
  probability = prob_tests(steer_prob, base_prob),
  small = list(gold = small_gold, pred = small_pred, labels = small_labels,
               result = prf(small_gold, small_pred, small_labels)),
  mcnemar_fixed = fixed
)
write_json(doc, out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null")
