"""Ensemble distillation: teachers as live or cached sources (``sources``), the cache's format, key and builder
(``cache``), and the Trainer whose loss mixes CE with the KL to the ensemble (``trainer``)."""
