"""Where to steer (``steer-harness locate``): per decoder layer and component (residual
stream, attention output, MLP output), how separable a contrastive pair set is
(:mod:`.probe`), how much patching each site moves a trait metric by attribution
patching (:mod:`.patching`, :mod:`.metric`), checked by exact activation patching, and
optionally the measured steering delta (:mod:`.steer`); :mod:`.locator` runs them,
:mod:`.report` writes the table, figure and JSON, :mod:`.command` is the subcommand.

:mod:`.layers` resolves a spec's ``layers = "locate:<pairs>[:<k>]"`` from a cached
localisation, so the run imports this package: it sits between run and report, may import
report, steering, model, config, core and stats, and nothing below imports it. This
package file imports nothing, so the CLI can register the subcommand without loading
torch.
"""
