"""The markdown report and its figures.

``harness.report.markdown`` is imported first so that section modules importing its
helpers at their top (``harness.report.sections``) work in any import order.
"""

from harness.report import markdown as markdown
