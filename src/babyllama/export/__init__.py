"""Leaving babyllama: a clean Hugging Face folder with a model card (``model``, ``card``) and lm-evaluation-harness
task files for the local evaluation data (``lm_eval_tasks``)."""
