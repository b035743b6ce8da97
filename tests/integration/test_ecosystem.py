"""What users of the Hugging Face / BabyLM tools expect: cached hub ids offline, checkpoints by words seen with a
learning curve, the Python API of the README, the command line's conventions, generation, TensorBoard figures."""

import json
import re
import shutil

import pytest

from babyllama.cli import build_parser, main
from babyllama.config import ModelConfig
from babyllama.models import build_model, resolve_model_path
from helpers import REPO, run_here, tiny_config

PAIRS = [("The cat sees the ball.", "The cat see the ball."), ("She likes a dog.", "She like a dog."),
         ("The children wait.", "The children waits.")]


@pytest.fixture
def pairs(tmp_path):
    f = tmp_path / "agr.jsonl"
    f.write_text("".join(json.dumps({"sentence_good": g, "sentence_bad": b}) + "\n" for g, b in PAIRS))
    return f


@pytest.fixture
def hub_cache(tiny_tokenizer, tmp_path, monkeypatch):
    """A Hugging Face cache holding `babylm-test/tiny`, laid out as huggingface_hub lays it out."""
    cache = tmp_path / "hub"
    snap = cache / "models--babylm-test--tiny" / "snapshots" / "0123abcd"
    build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).save_pretrained(snap)
    tiny_tokenizer.save_pretrained(snap)
    (cache / "models--babylm-test--tiny" / "refs").mkdir()
    (cache / "models--babylm-test--tiny" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    return snap


def test_a_cached_hub_id_resolves_offline_and_an_uncached_one_is_one_line(hub_cache, pairs, capsys):
    assert resolve_model_path("babylm-test/tiny") == hub_cache
    assert main(["eval", "babylm-test/tiny", "--suite", str(pairs)]) == 0
    assert "macro mean" in capsys.readouterr().out
    assert main(["eval", "babylm-test/not-cached", "--suite", str(pairs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not-cached" in err and "hf download babylm-test/not-cached" in err


@pytest.mark.slow
def test_checkpoints_by_words_and_the_learning_curve(tiny_prepared, tiny_tokenizer_dir, tiny_tokenizer, pairs,
                                                     tmp_path, capsys):
    from babyllama.data.dataset import load_split
    from babyllama.io import read_json
    from babyllama.training.pretrain import train

    words = sum(d["words"] for d in read_json(tiny_prepared / "stats.json")["splits"]["train"].values())
    tokens = load_split(tiny_prepared, "train", tiny_tokenizer).num_tokens
    words_per_step = words / tokens * 8 * 64  # batch 8 x 64 tokens
    steps = int(1500 // words_per_step) + 2
    out = tmp_path / "run"
    m = train(tiny_config(tiny_prepared, tiny_tokenizer_dir, out, max_steps=steps, eval_strategy="no",
                          save_at_words=[300, 600, 1500]))
    assert read_json(out / "run_info.json")["train_words_per_token"] == pytest.approx(words / tokens)
    for target, label in ((300, "300"), (600, "600"), (1500, "1.5k")):
        info = read_json(out / f"words-{label}" / "words.json")
        step = int(-(-target // words_per_step))  # the first step at which `target` words were seen
        assert info == {"words": round(step * words_per_step), "target": target, "step": step}, (label, info)
        assert (out / f"words-{label}" / "model.safetensors").exists()
        assert read_json(out / f"words-{label}" / "tokenizer_config.json")["model_max_length"] == 256
    assert m["global_step"] == steps
    capsys.readouterr()
    wug = tmp_path / "eval" / "wug_adj_nominalization"
    wug.mkdir(parents=True)
    (wug / "wug.jsonl").write_text("".join(json.dumps({"sentences": f"The {w}able one. {w}ability\tThe {w}able one. "
                                                                      f"{w}ableness", "ratio": (k % 7) / 7}) + "\n"
                                           for k, w in enumerate(["blick", "dax", "wug", "fep", "toma", "zib", "mip",
                                                                  "lorp", "gazz", "tiv"])))
    args = ["eval", str(out), "--all-checkpoints", "--suite", str(pairs), "--suite", "wug_adj", "--eval-root",
            str(tmp_path / "eval"), "--resamples", "99", "--json", str(tmp_path / "c.json")]
    assert main(args) == 0
    table = capsys.readouterr().out.split("\nwrote ")[0]
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["300", "600", "1.5k"]
    assert "wug_adj (rho)" in table.splitlines()[0]  # a rank correlation, not a percentage
    assert (out / "learning_curve.png").stat().st_size > 5000 and (out / "learning_curve.md").exists()
    curve = read_json(out / "learning_curve.json")
    assert [p["words"] for p in curve["points"]] == [300, 600, 1500]
    assert read_json(tmp_path / "c.json") == curve  # --json gets the same results


@pytest.mark.slow
def test_the_readme_python_example_runs(tiny_raw, tmp_path, pairs, monkeypatch):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- api-example -->\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    data = tmp_path / "data"
    shutil.copytree(tiny_raw, data / "corpus")
    (data / "eval" / "blimp_fast").mkdir(parents=True)
    shutil.copy(pairs, data / "eval" / "blimp_fast" / "agr.jsonl")
    monkeypatch.chdir(tmp_path)
    # the example as written, on the data made here: a vocabulary this small corpus can fill, fewer steps
    code = code.replace('"../shared/data"', repr(str(data))).replace("vocab_size=8000", "vocab_size=300")
    code = code.replace('"max_steps": 200', '"max_steps": 4')
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["metrics"]["global_step"] == 4
    assert 0 <= namespace["results"]["suites"]["blimp_fast"]["macro"]["acc"] <= 1


def test_command_line_conventions(capsys):
    assert run_here(capsys, "--version").stdout.strip().startswith("babyllama 0.")
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = []
    for name, sub in subs.choices.items():
        children = [sub] + [c for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"
                            for c in a.choices.values()]
        for p in children:
            missing += [f"{p.prog} {a.dest}" for a in p._actions if not a.help and a.dest != "help"]
    assert not missing, missing
    text = run_here(capsys, "eval", "--help").stdout
    assert "(default: 64)" in " ".join(text.split())  # defaults shown
    r = run_here(capsys, "models")
    lines = r.stdout.splitlines()
    assert len({re.match(r"\S+\s+", line).end() for line in lines}) == 1  # aligned columns
    assert len({len(line) for line in lines}) == 1 and lines[0].split() == ["preset", "architecture", "params"]


def test_run_only_and_from_select_stages(tmp_path, capsys):
    data = tmp_path / "data"
    for split in ("train", "dev", "test"):
        (data / "corpus" / split).mkdir(parents=True)
        (data / "corpus" / split / "a.txt").write_text("some text .\n")
    common = ["run", str(REPO / "recipes" / "smoke.yaml"), "--data-root", str(data), "--run-dir",
              str(tmp_path / "r"), "--set", "eval.suites=[perplexity]", "--set", "finetune=null", "--dry-run"]
    assert main([*common, "--only", "tokenizer", "--only", "teacher:gpt2-tiny"]) == 0
    plan = {line.split()[1]: line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert {n for n, a in plan.items() if a != "skip"} == {"tokenizer", "teacher:gpt2-tiny"}
    assert main([*common, "--from", "student:s1"]) == 0
    plan = {line.split()[1]: line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert [n for n, a in plan.items() if a != "skip"] == ["student:s1", *[n for n in plan if n.startswith("eval:")]]
    assert main([*common, "--only", "nope"]) == 2
    assert "no stage 'nope'" in capsys.readouterr().err
    assert main([c for c in common if c != "--dry-run"] + ["--only", "teacher:gpt2-tiny"]) == 2
    assert "needs tokenizer, not done yet" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_and_device(tiny_tokenizer, tmp_path, pairs, capsys):
    d = tmp_path / "m"
    build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    assert main(["generate", str(d), "--prompt", "The cat", "--max-new-tokens", "5", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("The cat") and len(first) > len("The cat")
    assert main(["generate", str(d), "--prompt", "The cat", "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first  # seeded
    assert main(["eval", str(d), "--suite", str(pairs), "--device", "cpu"]) == 0


@pytest.mark.slow
def test_tensorboard_gets_tokens_per_second_and_hyperparameters(tiny_prepared, tiny_tokenizer_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from babyllama.training.pretrain import train

    out = tmp_path / "tb"
    train(tiny_config(tiny_prepared, tiny_tokenizer_dir, out, max_steps=6, logging_steps=2, eval_strategy="no",
                      report_to=["tensorboard"]))
    events = [p for p in (out / "runs").rglob("events.out.tfevents*")]
    tags = set()
    for e in events:
        acc = EventAccumulator(str(e.parent))
        acc.Reload()
        tags |= set(acc.Tags().get("scalars", []))
        try:
            tags |= set(acc.PluginTagToContent("hparams"))
        except KeyError:  # no hparams in this event file
            pass
    assert "train/train_tokens_per_s" in tags, tags
    assert "_hparams_/session_start_info" in tags, tags  # the resolved config on the hparams dashboard
