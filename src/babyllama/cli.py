"""The ``babyllama`` command: one sub-command per stage.

    babyllama data prepare SRC OUT          clean a BabyLM corpus, write stats.json, print the table
    babyllama data download NAME DEST       fetch an official release (resumable; --sha256 verifies it)
    babyllama tokenizer train CORPUS OUT    train the byte-level BPE
    babyllama models [--json]               list the model presets with parameter counts
    babyllama train CONFIG [--set k=v]      pretrain a teacher or a baseline
    babyllama distill CONFIG --teacher DIR  distil a teacher ensemble into a student
    babyllama eval MODEL_DIR --suite NAME   zero-shot evaluation (BLiMP, supplement, EWoK, perplexity)
    babyllama finetune MODEL_DIR --task T   fine-tuning evaluation ((Super)GLUE, MSGS) as the BabyLM pipelines
    babyllama run RECIPE [--dry-run]        the whole experiment, stage by stage, resumable
    babyllama status RUN_DIR                the stages of a run and their state
    babyllama report RUN_DIR                regenerate report.md, figures, tables/
    babyllama export MODEL_DIR OUT          a clean Hugging Face folder with a model card (--push-to-hub REPO)
    babyllama export lm-eval-tasks OUT      lm-evaluation-harness task YAMLs for the local eval data
    babyllama generate MODEL --prompt TEXT  sample a continuation

Errors the user can fix are printed as one line (``babyllama: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import UserError, fault_message, file_on_path, writing


def int_at_least(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high], with a one-line error otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {low}" + (f" to {high}" if high else
                                                                                     " or more"))
        return value
    return parse


def jobs_arg(text: str) -> int | str:
    """An argparse type: ``auto`` or a number of runs at once (1 or more)."""
    return "auto" if text == "auto" else int_at_least(1)(text)


def output_folder(text: str) -> str:
    """An argparse type for a folder to write into: it may not exist yet, but it must not be a file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    _no_file_above(Path(text))
    return text


def _no_file_above(path: Path) -> None:
    blocker = file_on_path(path.parent)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"{blocker} is a file where a folder belongs; choose another path")


def input_file(text: str) -> str:
    """An argparse type for a file to read: it must exist and be a file."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} not found" if not Path(text).exists() else f"{text} is not a file")
    return text


def output_file(text: str) -> str:
    """An argparse type for a file to write: not a folder, and its folder must not be a file."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if p.parent.exists() and not p.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{p.parent} is a file, not a folder")
    _no_file_above(p)
    return text


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default and keeps the top-level description's layout."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, []):  # said in words already, or nothing to say
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `babyllama: error:` line (exit 2) like every other error, and every
    sub-command's help shows its defaults."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set training.learning_rate=3e-4 (repeatable)")
    p.add_argument("--data-root", help="data root that fills ${data_root} (default: $BABYLLAMA_DATA)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in training.output_dir")


def actions(parser, dest: str, help: str):
    """A command's required sub-commands (``ACTION`` in its usage)."""
    return parser.add_subparsers(dest=dest, required=True, parser_class=Parser, metavar="ACTION", help=help)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = Parser(prog="babyllama", description=__doc__.split("\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--version", action="version", version=f"babyllama {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    data = sub.add_parser("data", help="corpus preparation and downloads")
    dsub = actions(data, "data_command", "prepare or download")
    p = dsub.add_parser("prepare", help="clean a BabyLM corpus into OUT and write stats.json")
    p.add_argument("src", help="BabyLM folder (2023, 2024 or train/dev/test layout) or a folder of .txt files")
    p.add_argument("out", type=output_folder, help="output directory (must not exist or be empty)")
    p.add_argument("--size", default="10M", choices=["10M", "100M"], help="training set when both are present")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is a previously prepared corpus")
    p = dsub.add_parser("download", help="download an official data set (resumable; records its sha256, verifies it "
                        "only against --sha256)")
    p.add_argument("name", nargs="?", help="data set name; omit to list them")
    p.add_argument("dest", nargs="?", type=output_folder, help="destination directory")
    p.add_argument("--url", help="override the source URL (mirrors, tests)")
    p.add_argument("--sha256", help="expected sha256 of the archive: the download is verified against it")

    tok = sub.add_parser("tokenizer", help="tokenizer training")
    tsub = actions(tok, "tok_command", "train")
    p = tsub.add_parser("train", help="train a byte-level BPE on a prepared corpus")
    p.add_argument("corpus", help="prepared corpus directory (babyllama data prepare)")
    p.add_argument("out", type=output_folder, help="output directory, loadable with AutoTokenizer.from_pretrained")
    p.add_argument("--vocab-size", type=int_at_least(259, 2**31 - 1), default=16000,
                   help="vocabulary size (both papers: 16000)")
    p.add_argument("--min-frequency", type=int_at_least(1), default=2, help="minimum pair frequency for a merge")
    p.add_argument("--split", default="train", help="split to train on")
    p.add_argument("--overwrite", action="store_true", help="replace an existing tokenizer in OUT")

    p = sub.add_parser("models", help="list model presets and parameter counts")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, architecture, params}")

    p = sub.add_parser("train", help="pretrain a teacher or baseline")
    _add_config_args(p)
    p = sub.add_parser("distill", help="distil teachers into a student")
    _add_config_args(p)
    p.add_argument("--teacher", action="append", default=[], metavar="DIR",
                   help="teacher: a model directory or a hub id in the local cache (repeatable; adds to "
                   "distill.teachers)")

    from .config import EvalConfig
    from .eval.suites import suite_help

    ev = EvalConfig.model_fields
    p = sub.add_parser("eval", help="zero-shot evaluation of one or more models")
    p.add_argument("models", nargs="*", help="Hugging Face causal LMs: directories or hub ids in the local cache "
                   "(with --all-checkpoints: a training output folder)")
    p.add_argument("--ensemble", nargs="+", metavar="DIR", help="also score these models as one: the ensemble of "
                   "distillation at T = 1 (--ensemble-rule), no merged checkpoint written; they must share a "
                   "tokenizer (name single models before this flag: it takes every directory after it)")
    p.add_argument("--ensemble-rule", choices=["logits_mean", "probs_mean"], default="logits_mean",
                   help="logits_mean: softmax of the mean logits (distill.ensemble's default); probs_mean: the mean "
                   "of the distributions")
    p.add_argument("--suite", action="append", default=[], help=f"suite name or a path to a folder/file of JSONL "
                   f"minimal pairs (repeatable). {suite_help()}")
    p.add_argument("--eval-root", help="folder with blimp/, blimp_filtered/, ... (default: $BABYLLAMA_DATA/eval)")
    p.add_argument("--corpus", help="prepared corpus for the perplexity suite")
    p.add_argument("--paradigm", "--paradigms", dest="paradigms", action="append", metavar="NAME",
                   help="only this paradigm / file (repeatable)")
    p.add_argument("--max-pairs", type=int_at_least(1), help="score at most N pairs per paradigm (seeded subset)")
    p.add_argument("--batch-size", type=int_at_least(1), default=ev["batch_size"].default,
                   help="sentences per forward pass")
    p.add_argument("--ppl-max-tokens", type=int_at_least(2), help="perplexity: at most N tokens per domain and split")
    p.add_argument("--precision", choices=["auto", "fp32", "exact_bf16", "bf16"], default=None,
                   help="exact_bf16: bf16 ranking, every item bf16 could decide ranked again in fp32 (fp32's "
                   "decisions); bf16: bf16 throughout; auto (default): exact_bf16 where bf16 is native, else fp32")
    p.add_argument("--bf16", action="store_true", help="score under bf16 autocast throughout (= --precision bf16)")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="torch.compile the decoder layers while scoring; auto: on a CPU with a C++ compiler for "
                   "large evaluations (4e12 parameters x sentences: the whole BLiMP, supplement and EWoK with a 58M model), "
                   "where the compile pays for itself")
    p.add_argument("--resamples", type=int_at_least(99), default=ev["resamples"].default,
                   help="bootstrap resamples behind the CIs and paired p-values (the smallest p is 2/(B+1))")
    p.add_argument("--padded", action="store_true", help="one padded row per sentence, lm-eval's own layout and "
                   "arithmetic (slower; by default shared prefixes are scored once, near-ties re-scored this way)")
    p.add_argument("--temperature-min", type=float, default=ev["temperature_min"].default,
                   help="entity tracking, wug: the logits' temperature, or the start of a scan (the 2025 pipeline's "
                   "--min_temperature)")
    p.add_argument("--temperature-max", type=float, help="end of the 2025 pipeline's temperature scan: the best "
                   "temperature is reported, as there (default: no scan)")
    p.add_argument("--temperature-interval", type=float, default=ev["temperature_interval"].default,
                   help="step of the temperature scan")
    p.add_argument("--tie-rule", choices=["first", "strict"], default=ev["tie_rule"].default,
                   help="entity tracking: first = an exact tie goes to the first (right) option, the 2025 "
                   "pipeline's rule; strict = a tie counts as wrong")
    p.add_argument("--json", dest="json_out", type=output_file, help="write the full results as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when present, else cpu)")
    p.add_argument("--all-checkpoints", action="store_true", help="score every words-* checkpoint of the "
                   "training output folder given (training.save_at_words) and write its learning curve; default "
                   "suites: blimp_fast, supplement_fast, ewok_fast")

    from .config import FinetuneConfig
    from .finetuning.tasks import TASKS

    ft = FinetuneConfig.model_fields
    p = sub.add_parser("finetune", help="fine-tuning evaluation ((Super)GLUE, MSGS) of one or more models, as the "
                       "BabyLM pipelines run it, over seeds, with CIs and paired comparisons")
    p.add_argument("models", nargs="+", help="Hugging Face causal LMs: directories or hub ids in the local cache")
    p.add_argument("--task", dest="tasks", action="append", default=[], choices=list(TASKS), metavar="NAME",
                   help=f"task (repeatable): {', '.join(TASKS)}")
    p.add_argument("--protocol", choices=["babylm2023", "babylm2024", "babylm2025"], default=ft["protocol"].default,
                   help="whose fine-tuning script to follow")
    p.add_argument("--seeds", nargs="+", type=int, help="fine-tuning seeds (default: the protocol's, 12; 2025: 42)")
    p.add_argument("--eval-root", "--data-dir", dest="eval_root", help="folder with glue_filtered/ and "
                   "msgs_filtered/, as for `babyllama eval` (default: $BABYLLAMA_DATA/eval)")
    p.add_argument("--hparams", type=input_file, metavar="FILE.yaml",
                   help="per-task overrides {task or default: {learning_rate, batch_size, max_epochs, ...}}")
    p.add_argument("--max-epochs", type=int_at_least(1), help="cap every task's epochs")
    p.add_argument("--max-train-examples", type=int_at_least(1), help="train on a seeded subset of N examples")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 autocast where the device runs it natively, else fp32")
    p.add_argument("--pooling", choices=["auto", "last", "first"], default="auto",
                   help="auto: the protocol's (2023/2024: last non-pad token; 2025: first token)")
    p.add_argument("--lora", action="store_true", help="train low-rank adapters (peft; r 8, alpha 16, dropout 0.1 "
                   "as the 2024 pipeline's train_lora.py) and the head instead of the whole model")
    p.add_argument("--random-batches", action="store_true", help="random training batches, as the "
                   "protocols' scripts draw them, instead of the Trainer's group_by_length ones (slower: more padding)")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="torch.compile the decoder "
                   "layers for training (auto: on a CPU when the runs are long enough to pay for the compile)")
    p.add_argument("--jobs", type=jobs_arg, help="runs (task x seed) at once in forked processes sharing the "
                   "torch threads (default 1; auto: one per thread on a CPU, within memory; 1 on a GPU)")
    p.add_argument("--json", dest="json_out", type=output_file, help="write the full results as JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when present, else cpu)")

    p = sub.add_parser("run", help="run a recipe: data, tokenizer, teachers, baseline, student, eval, report")
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set distill.alpha=0.3 (repeatable)")
    p.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="FILE.yaml",
                   help="a YAML mapping of dotted keys to values, applied before --set (repeatable)")
    p.add_argument("--data-root", help="data root (default: $BABYLLAMA_DATA)")
    p.add_argument("--run-dir", help="where stages are written (default: the recipe's run_dir)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (what runs, what is reused) and exit")
    p.add_argument("--only", dest="only", action="append", default=[], metavar="STAGE",
                   help="run only this stage (repeatable; its inputs must be done): a user's scheduler can send "
                   "stages to different machines sharing the run directory")
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="run this stage and every one after it")
    p.add_argument("--makefile", type=output_file, metavar="FILE", help="write the stages as a Makefile and run "
                   "nothing: `make -j2 -f FILE` then runs stages whose inputs are done side by side (faster than one "
                   "stage on all cores for small models)")
    p.add_argument("--no-estimate", dest="estimate", action="store_false", help="skip the up-front estimate of "
                   "the whole job (a few training steps of each model, timed before the first stage)")
    p = sub.add_parser("sweep", help="studies and sweeps of a recipe on Optuna: `sweep SWEEP.yaml` (short for "
                       "`sweep run`), `sweep report DIR`, `sweep best DIR --out FILE.yaml`")
    ssub = p.add_subparsers(dest="sweep_command", metavar="{run,report,best}", help="what to do with a sweep")
    ssub.required = True
    q = ssub.add_parser("run", help="run (or continue) the trials of a sweep file")
    q.add_argument("sweep_file", type=input_file, help="sweep YAML (see recipes/studies/)")
    q.add_argument("--trials", type=int_at_least(1), help="trials in the study, all workers together and failed "
                   "ones included (default: the file's trials, or the grid's size)")
    q.add_argument("--workers", type=int_at_least(1), default=1, help="worker processes to start here")
    q.add_argument("--storage", metavar="URL", help="Optuna storage URL shared by workers on many machines "
                   "(default: sqlite:///SWEEP_DIR/study.db)")
    q.add_argument("--sweep-dir", help="where trials and the stage store live (default: the file's sweep_dir)")
    q.add_argument("--data-root", help="data root of the recipe (default: $BABYLLAMA_DATA)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed recipe override for every trial, after the file's set: (repeatable)")
    q.add_argument("--no-final", action="store_true", help="skip the final run of a `final: true` sweep")
    q.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    q = ssub.add_parser("report", help="write SWEEP_DIR/report.md: trials, the best configuration, figures")
    q.add_argument("sweep_dir", help="a sweep directory (made by babyllama sweep)")
    q.add_argument("--storage", metavar="URL", help="the study's storage when sweep.json holds no usable URL")
    q = ssub.add_parser("best", help="export the best trial's overrides for `babyllama run RECIPE --set-file`")
    q.add_argument("sweep_dir", help="a sweep directory (made by babyllama sweep)")
    q.add_argument("--out", required=True, type=output_file, metavar="FILE.yaml", help="where to write them")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    q.add_argument("--storage", metavar="URL", help="the study's storage when sweep.json holds no usable URL")

    p = sub.add_parser("status", help="show the stages of a run directory")
    p.add_argument("run_dir", help="a run directory (made by babyllama run)")
    p = sub.add_parser("report", help="regenerate report.md, its figures and tables/ (CSV, LaTeX) of a run directory")
    p.add_argument("run_dir", help="a run directory (made by babyllama run)")

    p = sub.add_parser("export", help="a clean Hugging Face folder with a model card, or lm-eval task files")
    p.add_argument("model", metavar="MODEL_DIR|lm-eval-tasks",
                   help="a trained model directory, or `lm-eval-tasks` for lm-evaluation-harness task YAMLs")
    p.add_argument("out", type=output_folder, help="output folder (must not exist or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.add_argument("--name", help="model name in the card (default: the directory's name)")
    p.add_argument("--license", default="apache-2.0", help="license in the card's metadata")
    p.add_argument("--dataset", dest="datasets", action="append", metavar="NAME",
                   help="data set named in the card's metadata (repeatable; default: BabyLM)")
    p.add_argument("--eval-json", metavar="FILE", help="eval results for the card (`babyllama eval MODEL_DIR ... "
                   "--json FILE`); default: the run's own eval stage, when the model is a stage of a run")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload OUT to this hub repository (network and token)")
    p.add_argument("--eval-root", help="lm-eval-tasks: folder with blimp/, blimp_filtered/, ... (default: "
                   "$BABYLLAMA_DATA/eval)")
    p.add_argument("--suite", action="append", metavar="NAME", help="lm-eval-tasks: only this suite (repeatable; "
                   "default: blimp, blimp_filtered, supplement, ewok)")

    p = sub.add_parser("generate", help="sample text from a model, for a quick look at what it learned")
    p.add_argument("model", help="model directory or a hub id in the local cache")
    p.add_argument("--prompt", default="", help="text to continue")
    p.add_argument("--max-new-tokens", type=int_at_least(1), default=50, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when present, else cpu)")
    return ap


def cmd_data(args) -> int:
    if args.data_command == "prepare":
        from .api import prepare
        from .data.corpus import stats_table

        with writing(args.out):
            stats = prepare(args.src, args.out, overwrite=args.overwrite, size=args.size)
        print(stats_table(stats))
        print(f"wrote {args.out} (layout: {stats['layout']})")
        return 0
    from .data import download

    if not args.name:
        print(download.list_sources())
        return 0
    if not args.dest:
        raise UserError("babyllama data download NAME DEST: DEST is missing")
    with writing(args.dest):
        path = download.download(args.name, args.dest, url=args.url, sha256=args.sha256)
    print(f"ready: {path}")
    return 0


def cmd_tokenizer(args) -> int:
    from .api import train_tokenizer

    with writing(args.out):
        tok = train_tokenizer(args.corpus, args.out, vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                              split=args.split, overwrite=args.overwrite)
    print(f"wrote {args.out}: vocabulary {len(tok)} (special tokens: pad={tok.pad_token} bos={tok.bos_token} "
          f"eos={tok.eos_token})")
    return 0


def cmd_models(args) -> int:
    from .models import list_presets

    rows = list_presets()
    if args.json:
        print(json.dumps(rows))
    else:
        w = max(len(r["name"]) for r in rows)
        print(f"{'preset':<{w}}  {'architecture':<12}  {'params':>9}")
        for r in rows:
            print(f"{r['name']:<{w}}  {r['architecture']:<12}  {r['params'] / 1e6:>8.2f}M")
    return 0


def _load(args):
    from .config import dump_yaml, load_config

    cfg = load_config(args.config, args.overrides, args.data_root)
    if getattr(args, "teacher", None):
        cfg.distill.teachers = [*cfg.distill.teachers, *args.teacher]
    if args.dry_run:
        print(dump_yaml(cfg), end="")
    return cfg


def _train_stage(args, kind: str) -> int:
    cfg = _load(args)
    if args.dry_run:
        return 0
    from . import api

    train_stage = api.train if kind == "train" else api.distill
    with writing(cfg.training.output_dir):
        m = train_stage(cfg, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary line
        keys = ("params", "global_step", "eval_loss_start", "eval_loss_best", "train_tokens_per_s")
        print(json.dumps({k: m.get(k) for k in keys}))
    return 0


def cmd_train(args) -> int:
    return _train_stage(args, "train")


def cmd_distill(args) -> int:
    return _train_stage(args, "distill")


def _eval_precision(args) -> str:
    if args.bf16 and args.precision not in (None, "bf16"):
        raise UserError(f"--bf16 and --precision {args.precision} disagree; give one of them")
    return "bf16" if args.bf16 else args.precision or "auto"


def eval_settings(args) -> dict:
    """The flags of `babyllama eval` as EvalConfig fields (the settings a recipe's eval: section holds)."""
    return {"batch_size": args.batch_size, "paradigms": args.paradigms, "max_pairs": args.max_pairs,
            "ppl_max_tokens": args.ppl_max_tokens,
            "precision": _eval_precision(args),
            "compile": {"on": True, "off": False}.get(args.compile, "auto"),
            "layout": "padded" if args.padded else "prefix_tree", "resamples": args.resamples,
            "temperature_min": args.temperature_min, "temperature_max": args.temperature_max,
            "temperature_interval": args.temperature_interval, "tie_rule": args.tie_rule}


def cmd_eval(args) -> int:
    from . import api
    from .eval.markdown import markdown

    common = dict(corpus=args.corpus, eval_root=args.eval_root, device=args.device, source="babyllama eval",
                  **eval_settings(args))
    if args.all_checkpoints:
        suites = args.suite or ["blimp_fast", "supplement_fast", "ewok_fast"]
        if len(args.models) != 1 or args.ensemble:
            raise UserError("--all-checkpoints takes one training output folder (and no --ensemble)")
        refuse_existing_json(args)
        table, curve = api.learning_curve(args.models[0], suites, **common)
        return show_results(table, curve, args.json_out)  # learning_curve.json in the folder, and --json if given
    if not args.suite:
        raise UserError("no suite: pass --suite NAME (repeatable); see `babyllama eval --help` for the names")
    if not args.models and not args.ensemble:
        raise UserError("no model: pass model directories, --ensemble DIR DIR ..., or both")
    if args.ensemble and len(args.ensemble) < 2:
        raise UserError("--ensemble needs at least two model directories")
    refuse_existing_json(args)
    res = api.evaluate_models(args.models, args.suite, ensemble=args.ensemble, ensemble_rule=args.ensemble_rule,
                              **common)
    return show_results(markdown(res), res, args.json_out)


def refuse_existing_json(args) -> None:
    """--json never overwrites a results file unless --overwrite (checked before any work)."""
    if args.json_out and Path(args.json_out).exists() and not args.overwrite:
        raise UserError(f"{args.json_out} exists; choose another --json file or pass --overwrite")


def show_results(table: str, res: dict, json_out: str | None) -> int:
    from .io import write_json

    print(table)
    if json_out:
        with writing(Path(json_out).parent):
            write_json(json_out, res)
        print(f"wrote {json_out}")
    return 0


def cmd_finetune(args) -> int:
    from . import api
    from .finetuning.markdown import markdown

    refuse_existing_json(args)
    settings = {"protocol": args.protocol, "seeds": args.seeds, "hparams": args.hparams,
                "max_epochs": args.max_epochs, "max_train_examples": args.max_train_examples,
                "precision": args.precision, "pooling": args.pooling, "length_grouping": not args.random_batches,
                "lora": {} if args.lora else None, "jobs": args.jobs,
                "compile": {"auto": "auto", "on": True, "off": False}[args.compile]}
    res = api.finetune(args.models, args.tasks or [], eval_root=args.eval_root, device=args.device,
                       names=args.models, source="babyllama finetune", **settings)
    return show_results(markdown(res), res, args.json_out)


def cmd_run(args) -> int:
    from .api import run
    from .config import overrides_from_file

    overrides = [o for f in args.set_files for o in overrides_from_file(f)] + args.overrides
    run(args.recipe, data_root=args.data_root, run_dir=args.run_dir, overrides=overrides, only=args.only,
        from_stage=args.from_stage, dry_run=args.dry_run, makefile=args.makefile, estimate=args.estimate)
    return 0


def cmd_export(args) -> int:
    if args.model == "lm-eval-tasks":
        from .eval.suites import default_eval_root
        from .export.lm_eval_tasks import export_tasks

        with writing(args.out):
            groups = export_tasks(args.out, args.eval_root or default_eval_root(), args.suite,
                                  overwrite=args.overwrite)
        for g, tasks in groups.items():
            print(f"{g}: {len(tasks)} tasks")
        print(f"wrote {args.out}; run e.g. `lm_eval --model hf --model_args pretrained=MODEL --include_path {args.out} "
              f"--tasks {','.join(groups)}`")
        return 0
    from .export.model import evaluation_from_results, export_model, push_to_hub
    from .io import read_json
    from .models import resolve_model_path

    src = resolve_model_path(args.model)
    evaluation = None
    if args.eval_json:
        results = read_json(args.eval_json)
        if not isinstance(results, dict):
            raise UserError(f"{args.eval_json}: not a JSON file of `babyllama eval --json`")
        evaluation = evaluation_from_results(results, src)
    with writing(args.out):
        out = export_model(src, args.out, overwrite=args.overwrite, name=args.name, license=args.license,
                           datasets=args.datasets, evaluation=evaluation)
    print(f"wrote {out}")
    if args.push_to_hub:
        print(f"uploaded: {push_to_hub(out, args.push_to_hub)}")
    return 0


def cmd_generate(args) -> int:
    from .generate import generate

    print(generate(args.model, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                   top_p=args.top_p, seed=args.seed, device=args.device))
    return 0


def cmd_sweep(args) -> int:
    from .sweep import command

    if args.sweep_command == "run":
        command.run_sweep(args.sweep_file, trials=args.trials, workers=args.workers, storage=args.storage,
                          sweep_dir=args.sweep_dir, data_root=args.data_root, worker_index=args.worker_index,
                          final=not args.no_final, overrides=args.overrides)
    elif args.sweep_command == "report":
        print(command.report(args.sweep_dir, args.storage))
    else:
        print(command.export_best(args.sweep_dir, args.out, args.storage, args.overwrite))
    return 0


def cmd_status(args) -> int:
    from .runner.plan import load_plan
    from .runner.state import status_table

    print(status_table(load_plan(args.run_dir)))
    return 0


def cmd_report(args) -> int:
    from .report.markdown import write_report

    print(write_report(args.run_dir))
    return 0


COMMANDS = {"data": cmd_data, "tokenizer": cmd_tokenizer, "models": cmd_models, "train": cmd_train,
            "distill": cmd_distill, "eval": cmd_eval, "finetune": cmd_finetune, "run": cmd_run,
            "sweep": cmd_sweep, "status": cmd_status, "report": cmd_report, "export": cmd_export, "generate": cmd_generate}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv[:1] == ["sweep"] and len(argv) > 1 and argv[1] not in ("run", "report", "best", "-h", "--help"):
            argv.insert(1, "run")  # `babyllama sweep SWEEP.yaml` is `babyllama sweep run SWEEP.yaml`
        args = build_parser().parse_args(argv)
        if args.command in ("run", "train", "distill", "eval", "finetune", "sweep"):
            from .progress import quiet_library_bars

            quiet_library_bars()  # a stage shows one bar of its own, not the loader's and the writer's
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"babyllama: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("babyllama: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except BaseException as e:  # noqa: BLE001 - a full disk arrives as OSError, RuntimeError or a Rust panic
        message = fault_message(e)
        if message is None or isinstance(e, SystemExit):
            raise
        print(f"babyllama: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
