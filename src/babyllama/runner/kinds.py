"""The stage kinds, registered once (in the manner of :mod:`babyllama.eval.suites`): each kind's name, its executor,
the result file it writes and whether it trains a model. Everything that asks "is this a training stage?" or
"where is its result?" asks here.

The runner's own kinds are registered below, their executors named as ``module:function`` and imported when a
stage of the kind runs (:mod:`babyllama.runner.stages`), so that reading the table imports neither torch nor the
trainers. A layer above the runner registers its own kind with :func:`register_stage_kind`: the report
(:mod:`babyllama.report.markdown`), whose executor runs once every stage is done.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..runinfo import EVAL_FILE, FINETUNE_FILE, METRICS_FILE


@dataclass(frozen=True)
class StageKind:
    name: str
    executor: Callable | str  # a callable, or "module:function" imported on first use
    result_file: str | None = None  # what a finished stage of the kind holds, in its directory
    trains_model: bool = False

    @property
    def run(self) -> Callable:
        if callable(self.executor):
            return self.executor
        module, func = self.executor.split(":")
        return getattr(importlib.import_module(module), func)


STAGE_KINDS: dict[str, StageKind] = {}


def register_stage_kind(kind: StageKind) -> StageKind:
    if kind.name in STAGE_KINDS and STAGE_KINDS[kind.name] != kind:
        raise ValueError(f"stage kind '{kind.name}' is registered twice")
    STAGE_KINDS[kind.name] = kind
    return kind


def stage_kind(name: str) -> StageKind:
    if name not in STAGE_KINDS:
        raise ValueError(f"no stage kind '{name}' is registered (registered: {', '.join(STAGE_KINDS)})")
    return STAGE_KINDS[name]


def trains_model(kind: str) -> bool:
    return stage_kind(kind).trains_model


def result_file(kind: str) -> str | None:
    return stage_kind(kind).result_file


for _kind in (StageKind("prepare", "babyllama.runner.stages:run_prepare"),
              StageKind("tokenizer", "babyllama.runner.stages:run_tokenizer"),
              StageKind("pretrain", "babyllama.runner.stages:run_pretrain", METRICS_FILE, trains_model=True),
              StageKind("distill", "babyllama.runner.stages:run_distill", METRICS_FILE, trains_model=True),
              StageKind("eval", "babyllama.runner.stages:run_eval", EVAL_FILE),
              StageKind("finetune", "babyllama.runner.stages:run_finetune", FINETUNE_FILE)):
    register_stage_kind(_kind)
