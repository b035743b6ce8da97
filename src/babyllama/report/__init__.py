"""The experiment report: what a run holds (``collect``), the verdict lines (``verdicts``), the PNG figures
(``figures``) and ``report.md`` (``markdown``)."""
