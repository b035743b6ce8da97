"""The catalogue of bad input and faults: every case exits non-zero with one `babyllama: error:` line that names the
file or key and the fix, no traceback, and leaves every file the user had as it was (and nothing new that looks
like a result). In-process through `babyllama.cli.main`, so the catalogue costs seconds."""

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from babyllama.cli import main
from babyllama.config import ModelConfig
from babyllama.io import exclusive
from babyllama.models import build_model
from helpers import REPO


@dataclass
class Fx:
    tmp: Path
    corpus: Path
    tokenizer: Path
    model: Path  # a model directory with its tokenizer
    other_tokenizer: Path


@pytest.fixture
def fx(tiny_prepared, tiny_tokenizer_dir, tiny_tokenizer, tmp_path):
    model = tmp_path / "model"
    build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).save_pretrained(model)
    tiny_tokenizer.save_pretrained(model)
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_prepared, corpus)
    other = tmp_path / "other-tok"
    from babyllama.data.bpe import train_tokenizer
    train_tokenizer(corpus, other, vocab_size=280)
    return Fx(tmp_path, corpus, tiny_tokenizer_dir, model, other)


def config(fx: Fx, name="c.yaml", **sections) -> Path:
    tree = {"data": {"corpus": str(fx.corpus), "tokenizer": str(fx.tokenizer), "seq_len": 32},
            "model": {"preset": "llama-tiny"},
            "training": {"output_dir": str(fx.tmp / "out"), "max_steps": 2, "batch_size": 2, "report_to": ["none"],
                         "eval_strategy": "no", "progress": False}}
    for section, values in sections.items():
        if values is None:
            tree.pop(section, None)
        else:
            tree[section] = {**tree.get(section, {}), **values}
    p = fx.tmp / name
    p.write_text(yaml.safe_dump(tree))
    return p


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and ".token_cache" not in p.parts}


def _teacher_other_tokenizer(fx):
    t = fx.tmp / "teacher"
    from babyllama.tokenizer import load_tokenizer
    tok = load_tokenizer(fx.other_tokenizer)
    build_model(ModelConfig(preset="llama-tiny"), tok, seed=0).save_pretrained(t)
    tok.save_pretrained(t)
    return t


def _corrupt_teacher(fx):
    t = fx.tmp / "bad-teacher"
    shutil.copytree(fx.model, t)
    (t / "model.safetensors").write_bytes(b"not a tensor file")
    return t


def _file(fx, name, data: bytes = b"x"):
    p = fx.tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _raw(fx, files: dict[str, bytes]):
    root = fx.tmp / "raw"
    for rel, data in files.items():
        _file(fx, f"raw/{rel}", data)
    return root


def _finished_out(fx):
    out = fx.tmp / "out"
    out.mkdir()
    (out / "run_info.json").write_text(json.dumps({"status": "complete"}))
    return out


def _jsonl(fx, text):
    return _file(fx, "pairs.jsonl", text.encode())


SMOKE = REPO / "recipes" / "smoke.yaml"


def _eval_root(fx, files: dict[str, bytes]):
    """An eval root holding only ``files`` (the BabyLM 2025 tasks' layout)."""
    for rel, data in files.items():
        _file(fx, f"eval/{rel}", data)
    return fx.tmp / "eval"


def _data_root(fx):
    """A data root whose corpus folder exists (the runner checks what it reads before what it writes)."""
    _file(fx, "dr/corpus/train/a.train", b"hi\n")
    for rel in ("blimp_fast/a.jsonl", "supplement_fast/a.jsonl", "ewok_fast/ewok_fast.zip",
                *(f"glue_filtered/{t}.{s}.jsonl" for t in ("rte", "mrpc", "wsc", "cola", "boolq", "sst2")
                  for s in ("train", "valid"))):
        _file(fx, f"dr/eval/{rel}")
    return fx.tmp / "dr"


READING_HEADER = (b"item,word,prev_item,prev_word,sent_id,Subtlex_log10,length,context_length,prev_length,"
                  b"RTfirstfix,RTfirstpass,RTgopast,RTrightbound,self_paced_reading_time,ELAN,LAN,N400,P600,EPNP\n")

# (id, build(fx) -> argv, what the error line says: one needle or a tuple of them)
CASES = [
    # --- configs and overrides
    ("config-missing", lambda fx: ["train", fx.tmp / "nope.yaml"], "config file not found"),
    ("config-bad-yaml", lambda fx: ["train", _file(fx, "c.yaml", b"a: [1\n")], "not valid UTF-8 YAML"),
    ("config-not-mapping", lambda fx: ["train", _file(fx, "c.yaml", b"- 1\n")], "top level must be a mapping"),
    ("config-not-utf8", lambda fx: ["train", _file(fx, "c.yaml", b"a: \xff\n")], "not valid UTF-8 YAML"),
    ("unknown-key", lambda fx: ["train", config(fx, model={"hiden_size": 3})], "unknown key 'model.hiden_size'"),
    ("unknown-section", lambda fx: ["train", config(fx, trainig={})], "unknown key 'trainig'"),
    ("eval-section-in-stage-config", lambda fx: ["train", config(fx, eval={"suites": ["blimp"]})],
     "unknown key 'eval'"),
    ("wrong-type", lambda fx: ["train", config(fx), "--set", "training.batch_size=many"], "training.batch_size"),
    ("set-without-equals", lambda fx: ["train", config(fx), "--set", "training.batch_size"], "not key=value"),
    ("set-bad-yaml-value", lambda fx: ["train", config(fx), "--set", "training.learning_rate=[1"], "not valid YAML"),
    ("batch-size-zero", lambda fx: ["train", config(fx), "--set", "training.batch_size=0"], "training.batch_size"),
    ("negative-lr", lambda fx: ["train", config(fx), "--set", "training.learning_rate=-1"],
     "training.learning_rate"),
    ("alpha-above-one", lambda fx: ["distill", config(fx), "--set", "distill.alpha=1.5"], "distill.alpha"),
    ("cache-sampled-too-many", lambda fx: ["distill", config(fx), "--set", "distill.cache.sampled=64"],
     "must be smaller than top_k"),
    # --- model and training consistency, refused before anything is written
    ("unknown-preset", lambda fx: ["train", config(fx, model={"preset": "llama-9000b"})], "unknown model preset"),
    ("heads-do-not-divide-hidden", lambda fx: ["train", config(fx, model={"num_heads": 5})],
     "not divisible by num_heads"),
    ("kv-heads-do-not-divide-heads", lambda fx: ["train", config(fx, model={"num_kv_heads": 3})],
     "not divisible by num_kv_heads"),
    ("unknown-activation", lambda fx: ["train", config(fx, model={"activation": "nope"})], "model.activation"),
    ("seq-len-beyond-llama-context", lambda fx: ["train", config(fx, data={"seq_len": 512})],
     "data.seq_len 512 is longer than the model's context"),
    ("seq-len-beyond-gpt2-context", lambda fx: ["train", config(fx, data={"seq_len": 300},
                                                                  model={"preset": "gpt2-tiny"})],
     "data.seq_len 300 is longer than the model's context"),
    ("fp16-on-cpu", lambda fx: ["train", config(fx, training={"precision": "fp16"})], "fp16 needs a CUDA device"),
    ("tracker-not-installed", lambda fx: ["train", config(fx, training={"report_to": ["wandb"]})],
     "wandb is not installed"),
    ("tracker-unknown", lambda fx: ["train", config(fx, training={"report_to": ["mlflowish"]})],
     "unknown tracker 'mlflowish'"),
    ("eval-steps-missing", lambda fx: ["train", config(fx, training={"eval_strategy": "steps"})],
     "training.eval_steps is needed"),
    ("output-dir-unset", lambda fx: ["train", config(fx, training={"output_dir": None})],
     "training.output_dir is not set"),
    ("output-dir-is-a-file", lambda fx: ["train", config(fx, training={"output_dir": str(_file(fx, "out"))})],
     "is a file"),
    ("output-dir-foreign", lambda fx: (_file(fx, "out/notes.txt"), ["train", config(fx)])[1],
     "holds no babyllama checkpoint"),
    ("output-dir-finished", lambda fx: (_finished_out(fx), ["train", config(fx)])[1], "already holds a finished run"),
    ("tokenizer-unset", lambda fx: ["train", config(fx, data={"tokenizer": None})], "data.tokenizer is not set"),
    ("tokenizer-missing", lambda fx: ["train", config(fx, data={"tokenizer": str(fx.tmp / "none")})],
     "no tokenizer here"),
    ("tokenizer-corrupt", lambda fx: ["train", config(fx, data={"tokenizer": str(_file(fx, "t/tokenizer.json",
                                                                                    b"{trunc").parent)})],
     "cannot load the tokenizer"),
    ("corpus-not-prepared", lambda fx: ["train", config(fx, data={"corpus": str(fx.tmp)})],
     "is not a prepared corpus"),
    ("corpus-unknown-domain", lambda fx: ["train", config(fx, data={"domains": ["klingon"]})], "no domain(s) klingon"),
    # --- distillation
    ("no-teachers", lambda fx: ["distill", config(fx)], "no teachers"),
    ("teacher-not-a-model", lambda fx: ["distill", config(fx), "--teacher", fx.tmp], "no config.json"),
    ("teacher-other-tokenizer", lambda fx: ["distill", config(fx), "--teacher", _teacher_other_tokenizer(fx)],
     "uses a different tokenizer"),
    ("teacher-corrupt", lambda fx: ["distill", config(fx), "--teacher", _corrupt_teacher(fx)],
     "cannot load the checkpoint"),
    ("teacher-weights-count", lambda fx: ["distill", config(fx, distill={"teacher_weights": [1, 2]}), "--teacher",
                                          fx.model], "teacher_weights has 2 entries for 1 teachers"),
    # --- data and tokenizer
    ("prepare-missing-source", lambda fx: ["data", "prepare", fx.tmp / "nope", fx.tmp / "p"],
     "corpus directory not found"),
    ("prepare-empty-corpus", lambda fx: ["data", "prepare", _raw(fx, {"train/a.train": b""}), fx.tmp / "p"],
     "the training split is empty"),
    ("prepare-not-utf8", lambda fx: ["data", "prepare", _raw(fx, {"train/a.train": b"caf\xe9\n"}), fx.tmp / "p"],
     "a.train: not UTF-8"),
    ("prepare-nul-bytes", lambda fx: ["data", "prepare", _raw(fx, {"train/a.train": b"ok\x00no\n"}), fx.tmp / "p"],
     "a.train: holds a NUL byte at offset 2"),
    ("prepare-out-is-a-file", lambda fx: ["data", "prepare", fx.corpus, _file(fx, "p")], "is a file"),
    ("prepare-out-foreign", lambda fx: ["data", "prepare", _raw(fx, {"train/a.train": b"hi\n"}),
                                        _file(fx, "p/mine.txt").parent], "exists and is not empty"),
    ("tokenizer-not-prepared", lambda fx: ["tokenizer", "train", fx.tmp, fx.tmp / "t"], "not a prepared corpus"),
    ("tokenizer-vocab-too-small", lambda fx: ["tokenizer", "train", fx.corpus, fx.tmp / "t", "--vocab-size", "100"],
     "--vocab-size: 100 is out of range"),
    ("tokenizer-vocab-overflow", lambda fx: ["tokenizer", "train", fx.corpus, fx.tmp / "t", "--vocab-size",
                                             str(2**40)], "--vocab-size"),
    ("tokenizer-vocab-not-a-number", lambda fx: ["tokenizer", "train", fx.corpus, fx.tmp / "t", "--vocab-size",
                                                 "lots"], "'lots' is not an integer"),
    ("tokenizer-negative-min-frequency", lambda fx: ["tokenizer", "train", fx.corpus, fx.tmp / "t",
                                                     "--min-frequency", "-1"], "--min-frequency: -1 is out of range"),
    ("tokenizer-vocab-beyond-corpus", lambda fx: ["tokenizer", "train", fx.corpus, fx.tmp / "t", "--vocab-size",
                                                  "60000"], "supports only"),
    ("tokenizer-out-holds-one", lambda fx: ["tokenizer", "train", fx.corpus, fx.other_tokenizer, "--vocab-size",
                                            "280"], "already holds a tokenizer"),
    ("download-unknown", lambda fx: ["data", "download", "nope", fx.tmp / "d"], "unknown data set 'nope'"),
    ("download-no-dest", lambda fx: ["data", "download", "blimp"], "DEST is missing"),
    # --- evaluation
    ("eval-no-suite", lambda fx: ["eval", fx.model], "no suite"),
    ("eval-unknown-suite", lambda fx: ["eval", fx.model, "--suite", "blimpish"], "unknown suite 'blimpish'"),
    ("eval-malformed-jsonl", lambda fx: ["eval", fx.model, "--suite", _jsonl(fx, '{"sentence_good": 1}\n')],
     "pairs.jsonl:1"),
    ("eval-not-a-model", lambda fx: ["eval", fx.tmp, "--suite", _jsonl(fx, '{"sentence_good": "a", '
                                                                           '"sentence_bad": "b"}\n')],
     "no config.json"),
    ("eval-json-exists", lambda fx: ["eval", fx.model, "--suite", _jsonl(fx, '{"sentence_good": "a", '
                                     '"sentence_bad": "b"}\n'), "--json", _file(fx, "res.json", b"{}")],
     "res.json exists"),
    ("eval-json-is-a-folder", lambda fx: ["eval", fx.model, "--suite", "blimp", "--json", fx.tmp], "is a folder"),
    ("eval-max-pairs-zero", lambda fx: ["eval", fx.model, "--suite", "blimp", "--max-pairs", "0"],
     "--max-pairs: 0 is out of range"),
    ("eval-perplexity-without-corpus", lambda fx: ["eval", fx.model, "--suite", "perplexity"], "needs --corpus"),
    # --- a file where a folder belongs, a folder where a file belongs (every command that writes)
    ("train-output-dir-under-a-file", lambda fx: ["train", config(fx, training={"output_dir": str(
        _file(fx, "blocker") / "out")})], "blocker is a file where a folder belongs"),
    ("prepare-out-under-a-file", lambda fx: ["data", "prepare", _raw(fx, {"train/a.train": b"hi\n"}),
                                             _file(fx, "blocker") / "corpus"], "blocker is a file where a folder"),
    ("tokenizer-out-under-a-file", lambda fx: ["tokenizer", "train", fx.corpus, _file(fx, "blocker") / "tok",
                                               "--vocab-size", "300"], "blocker is a file where a folder"),
    ("export-out-under-a-file", lambda fx: ["export", fx.model, _file(fx, "blocker") / "x"],
     "blocker is a file where a folder"),
    ("lm-eval-tasks-out-under-a-file", lambda fx: ["export", "lm-eval-tasks", _file(fx, "blocker") / "x"],
     "blocker is a file where a folder"),
    ("eval-json-under-a-file", lambda fx: ["eval", fx.model, "--suite", "blimp", "--json",
                                           _file(fx, "blocker") / "res.json"], "blocker is a file"),
    ("run-dir-is-a-file", lambda fx: ["run", SMOKE, "--data-root", _data_root(fx), "--run-dir",
                                      _file(fx, "runfile")], ("runfile is a file where a folder belongs", "run")),
    ("run-stages-folder-is-a-file", lambda fx: ["run", SMOKE, "--data-root", _data_root(fx), "--run-dir",
                                                _file(fx, "rd/stages").parent],
     ("rd/stages is a file where a folder belongs", "stage folder")),
    ("run-makefile-is-a-folder", lambda fx: ["run", SMOKE, "--data-root", _data_root(fx), "--run-dir", fx.tmp / "rd",
                                             "--makefile", fx.tmp], "is a folder; give a file name"),
    ("sweep-dir-is-a-file", lambda fx: ["sweep", "run", REPO / "recipes" / "studies" / "smoke.yaml", "--data-root",
                                        _data_root(fx), "--sweep-dir", _file(fx, "sweepfile")],
     "sweepfile is a file where a folder belongs"),
    # --- the BabyLM 2025 tasks
    ("eval-entity-tracking-missing", lambda fx: ["eval", fx.model, "--suite", "entity_tracking", "--eval-root",
                                                 _eval_root(fx, {"blimp/x.jsonl": b""})],
     ("entity_tracking", "not found", "--eval-root")),
    ("eval-entity-tracking-malformed", lambda fx: ["eval", fx.model, "--suite", "entity_tracking_fast",
                                                   "--eval-root", _eval_root(fx, {"entity_tracking/regular.jsonl":
                                                                                  b'{"input_prefix": "Box 0 ", '
                                                                                  b'"options": "x", "numops": 0}\n'})],
     ("regular.jsonl:1", "not an entity-tracking item", "options (a list of strings)")),
    ("eval-wug-bad-ratio", lambda fx: ["eval", fx.model, "--suite", "wug_adj", "--eval-root",
                                       _eval_root(fx, {"wug_adj_nominalization/w.jsonl":
                                                       b'{"sentences": "a\\tb", "ratio": 2}\n'})],
     ("w.jsonl:1", "ratio (a number in [0, 1])")),
    ("eval-reading-missing-column", lambda fx: ["eval", fx.model, "--suite", "reading", "--eval-root",
                                                _eval_root(fx, {"reading/reading_data.csv": READING_HEADER})],
     ("reading_data.csv", "no column PNP")),
    ("eval-temperature-scan-backwards", lambda fx: ["eval", fx.model, "--suite", "wug_adj", "--temperature-min",
                                                    "2", "--temperature-max", "1"],
     "temperature_max must be at least temperature_min"),
    ("export-wug-has-no-lm-eval-task", lambda fx: ["export", "lm-eval-tasks", fx.tmp / "tasks", "--suite",
                                                   "wug_adj"], ("wug_adj has no lm-eval task", "babyllama eval")),
    # --- recipes and run directories
    ("run-recipe-missing", lambda fx: ["run", fx.tmp / "r.yaml"], "recipe not found"),
    ("run-no-data-root", lambda fx: ["run", SMOKE, "--run-dir", fx.tmp / "r"],
     "needs the data root; pass --data-root DIR or set BABYLLAMA_DATA"),
    ("run-corpus-missing", lambda fx: ["run", SMOKE, "--run-dir", fx.tmp / "r", "--data-root", fx.tmp / "no"],
     ("corpus not found", "or set BABYLLAMA_DATA")),
    ("run-unknown-base-key", lambda fx: ["run", SMOKE, "--data-root", fx.tmp, "--set", "base.training.lrr=1"],
     "unknown key 'base.training.lrr'"),
    ("run-runner-owned-path", lambda fx: ["run", SMOKE, "--data-root", fx.tmp, "--set", "base.data.corpus=/x"],
     "set by the runner"),
    ("status-not-a-run", lambda fx: ["status", fx.tmp], "no readable plan.json"),
    ("report-not-a-run", lambda fx: ["report", fx.tmp], "no readable plan.json"),
    ("unknown-command", lambda fx: ["trian"], "invalid choice: 'trian'"),
    ("missing-argument", lambda fx: ["train"], "the following arguments are required: config"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, fx, capsys, monkeypatch):
    name, build, needle = case
    monkeypatch.delenv("BABYLLAMA_DATA", raising=False)
    argv = [str(a) for a in build(fx)]
    capsys.readouterr()  # what building the case printed
    before = snapshot(fx.tmp)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (name, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("babyllama: error:"), lines
    assert all(n in lines[0] for n in ((needle,) if isinstance(needle, str) else needle)), lines[0]
    after = snapshot(fx.tmp)
    assert {k: v for k, v in after.items() if k in before} == before, "a file the user had was changed"
    assert not set(after) - set(before), f"new files: {sorted(set(after) - set(before))}"


def test_the_catalogue_is_large():
    assert len(CASES) >= 40


def test_a_second_process_on_a_locked_output_dir_is_one_line(fx, capsys):
    cfg = config(fx)
    with exclusive(fx.tmp / "out", "training.output_dir"):  # another process training there
        code = main(["train", str(cfg)])
    line = capsys.readouterr().err.strip()
    assert code == 2 and "is in use by babyllama pid" in line and str(fx.tmp / "out") in line


def test_a_second_run_on_a_locked_run_dir_is_one_line(fx, capsys, tmp_path):
    data = tmp_path / "data"
    (data / "eval").mkdir(parents=True)
    shutil.copytree(fx.corpus, data / "corpus" / "train", ignore=shutil.ignore_patterns("dev", "test", "*.json"))
    with exclusive(tmp_path / "run", "run directory"):
        code = main(["run", str(SMOKE), "--data-root", str(data), "--run-dir", str(tmp_path / "run"),
                     "--set", "eval.suites=[perplexity]", "--set", "finetune=null"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "run directory" in line and "is in use by babyllama pid" in line


def test_a_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(fx, capsys):
    cfg = config(fx, training={"max_steps": 30, "learning_rate": 1e30, "eval_strategy": "steps", "eval_steps": 1,
                               "max_grad_norm": 0.0, "warmup_steps": 0})
    code = main(["train", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "training loss is nan" in err and "at step" in err and "resumes from" in err, err
    assert not (fx.tmp / "out" / "run_info.json").exists()


TMPFS = Path("/tmp/babyllama-tmpfs-test")


@pytest.fixture
def small_disk():
    """A 1 MB tmpfs: where mounting is not allowed (no root, no CAP_SYS_ADMIN) the disk-full tests skip."""
    TMPFS.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(TMPFS)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield TMPFS
    subprocess.run(["umount", str(TMPFS)], capture_output=True)


def _fill(disk: Path, leave: int):
    """Fill the tmpfs up to ``leave`` bytes."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "ballast").write_bytes(b"\0" * max(0, free - leave))


def test_disk_full_while_training_is_one_line_and_keeps_no_partial_checkpoint(fx, capsys, small_disk):
    out = small_disk / "out"
    cfg = config(fx, training={"output_dir": str(out), "max_steps": 4, "eval_strategy": "steps", "eval_steps": 2})
    _fill(small_disk, 300_000)  # the tiny model's weights fit, its optimizer state does not
    code = main(["train", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("babyllama: error: no space left on the device while writing"), err[-3:]
    assert str(out) in err[-1]
    assert not list(out.glob("checkpoint-*")) and not (out / "run_info.json").exists()


def test_disk_full_while_preparing_a_corpus_leaves_nothing(fx, capsys, small_disk):
    raw = _raw(fx, {"train/a.train": b"hello world .\n" * 40_000})
    _fill(small_disk, 100_000)
    code = main(["data", "prepare", str(raw), str(small_disk / "corpus")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "no space left on the device while writing" in err[-1] and str(small_disk) in err[-1]
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast"]


def test_disk_full_while_saving_a_tokenizer_leaves_nothing(fx, capsys, small_disk):
    _fill(small_disk, 4_000)
    code = main(["tokenizer", "train", str(fx.corpus), str(small_disk / "tok"), "--vocab-size", "280"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "no space left on the device while writing" in err[-1], err[-3:]
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast"]
