"""babyllama: sample-efficient language-model pretraining by ensemble distillation.

Reproduces "Baby Llama" (arXiv 2308.02019) and "BabyLlama-2" (arXiv 2409.17312): clean the BabyLM corpus,
train a BPE tokenizer, pretrain teachers, distil a teacher ensemble into a student, evaluate zero-shot.
Each stage is one `babyllama` sub-command; `babyllama run RECIPE.yaml` runs them all.
"""

__version__ = "0.1.0"

API = ("prepare", "train_tokenizer", "train", "distill", "evaluate", "finetune", "run", "sweep")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    """The Python API (:mod:`babyllama.api`), imported on first use so that `import babyllama` stays light."""
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'babyllama' has no attribute '{name}'")
