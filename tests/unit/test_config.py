import pytest
import yaml

from babyllama.config import (CacheConfig, Config, EvalConfig, Recipe, describe, dump_yaml, load_config, load_recipe,
                              explicit_keys)
from babyllama.errors import UserError
from helpers import REPO


def _yaml(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_full_path_and_allowed(tmp_path):
    p = _yaml(tmp_path, "training:\n  lrr: 1\n")
    with pytest.raises(UserError) as e:
        load_config(p)
    msg = str(e.value)
    assert "unknown key 'training.lrr'" in msg and "learning_rate" in msg and str(p) in msg


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(UserError, match="unknown key 'trainig'.*allowed keys under the top level: data_root, data"):
        load_config(_yaml(tmp_path, "trainig: {}\n"))


def test_wrong_type(tmp_path):
    with pytest.raises(UserError, match=r"key 'training.batch_size'.*integer.*'many'"):
        load_config(_yaml(tmp_path, "training:\n  batch_size: many\n"))
    with pytest.raises(UserError, match=r"key 'distill.kl_reduction'"):
        load_config(None, ["distill.kl_reduction=mean"])
    with pytest.raises(UserError, match=r"key 'distill.alpha'"):
        load_config(None, ["distill.alpha=1.5"])


def test_overrides_and_yaml_numbers(tmp_path):
    cfg = load_config(_yaml(tmp_path, "training:\n  learning_rate: 3e-4\n"), ["training.batch_size=7",
                                                                            "data.domains=[a, b]"])
    assert cfg.training.learning_rate == pytest.approx(3e-4)
    assert cfg.training.batch_size == 7 and cfg.data.domains == ["a", "b"]
    with pytest.raises(UserError, match="unknown key 'training.nope'"):
        load_config(None, ["training.nope=1"])
    with pytest.raises(UserError, match="not key=value"):
        load_config(None, ["training.batch_size"])


def test_data_root_interpolation(tmp_path, monkeypatch):
    p = _yaml(tmp_path, "data:\n  corpus: ${data_root}/corpus\n")
    monkeypatch.delenv("BABYLLAMA_DATA", raising=False)
    with pytest.raises(UserError, match="needs the data root"):
        load_config(p)
    assert load_config(p, data_root="/d").data.corpus == "/d/corpus"
    monkeypatch.setenv("BABYLLAMA_DATA", "/env")
    assert load_config(p).data.corpus == "/env/corpus"


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="not valid UTF-8 YAML"):
        load_config(_yaml(tmp_path, "a: [1\n"))
    with pytest.raises(UserError, match="top level must be a mapping"):
        load_config(_yaml(tmp_path, "- 1\n"))


def test_roundtrip_and_reference():
    assert all(doc for _, _, doc in describe(Recipe)), "every recipe field has a description"
    cfg = Config()
    assert Config.model_validate(yaml.safe_load(dump_yaml(cfg))) == cfg
    keys = [k for k, _, doc in describe()]
    assert "training.learning_rate" in keys and "distill.kl_reduction" in keys
    assert all(doc for _, _, doc in describe() if not _.startswith("data_root")), "every field has a description"


SHIPPED_YAML = sorted((REPO / "configs").rglob("*.yaml")) + sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_yaml_validates_without_data(path, monkeypatch):
    """Every YAML under configs/ is a Config (configs/finetune/: a fine-tuning hyperparameter table) and every one
    under recipes/ a Recipe (recipes/studies/: a sweep file), with no data on disk."""
    monkeypatch.delenv("BABYLLAMA_DATA", raising=False)
    if path.parts[-2] == "finetune":
        from babyllama.finetuning.run import hparams_table

        assert hparams_table(str(path))
    elif path.parts[-2] == "studies":
        from babyllama.sweep.config import load_sweep

        cfg, recipe = load_sweep(path)
        assert recipe.is_file() and cfg.space
        assert path.read_text().startswith("#"), "a study starts with a comment saying what it shows"
    elif path.parts[-2] == "recipes" or "recipes" in path.parts:
        r = load_recipe(path, data_root="/nonexistent/data")
        assert r.corpus.startswith("/nonexistent/data") and r.eval.eval_root == "/nonexistent/data/eval"
        assert path.read_text().startswith("#"), "a recipe starts with a comment saying what it reproduces"
    else:
        load_config(path, data_root="/nonexistent/data")


def test_eval_section_is_gone_from_stage_configs():
    """A key that does nothing is an error: eval settings live in recipes and in `babyllama eval`'s flags."""
    with pytest.raises(UserError, match="unknown key 'eval'"):
        load_config(None, ["eval.suites=[blimp]"])


def test_cache_section_nested_with_shorthand_and_resolved_default():
    assert Config.model_validate({"distill": {"cache": True}}).distill.cache == CacheConfig(enabled=True)
    c = Config.model_validate({"distill": {"cache": {"enabled": True, "window": "sliding"}}}).distill.cache
    assert c.student_random_offset is True
    assert CacheConfig().student_random_offset is False  # aligned: fixed chunks
    assert CacheConfig(random_offset=True).student_random_offset is True
    with pytest.raises(UserError, match=r"key 'distill.cache': sampled \(64\) must be smaller than top_k"):
        load_config(None, ["distill.cache.sampled=64"])
    with pytest.raises(UserError, match="unknown key 'distill.cache_top_k'"):
        load_config(None, ["distill.cache_top_k=8"])


RECIPE = """# a test recipe
name: t
run_dir: runs/t
corpus: /c
base:
  training: {learning_rate: 1.0e-3, batch_size: 8}
teachers:
  - {name: a, model: {preset: llama-tiny}, training: {learning_rate: 2.0e-3}}
student: {name: s, model: {preset: llama-tiny}}
"""


def test_recipe_partial_sections_are_typed_and_keep_only_written_keys(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE)
    r = load_recipe(p)
    assert explicit_keys(r.base.training) == {"learning_rate": 1e-3, "batch_size": 8}
    assert explicit_keys(r.teachers[0].training) == {"learning_rate": 2e-3} and explicit_keys(r.student.training) == {}
    assert isinstance(r.eval, EvalConfig) and r.eval.suites == EvalConfig().suites
    with pytest.raises(UserError, match=r"unknown key 'base.training.lrr'; allowed keys under base.training: "
                                        r"output_dir, seed, learning_rate"):
        load_recipe(p, ["base.training.lrr=1"])
    with pytest.raises(UserError, match=r"unknown key 'teachers\[0\].training.lr'; allowed keys under "
                                        r"teachers\[0\].training"):
        load_recipe(p, ["teachers.0.training.lr=1"])
    with pytest.raises(UserError, match=r"key 'base.training.batch_size'.*integer"):
        load_recipe(p, ["base.training.batch_size=many"])
    with pytest.raises(UserError, match="data.corpus is set by the runner"):
        load_recipe(p, ["base.data.corpus=/elsewhere"])
    with pytest.raises(UserError, match="not an index"):
        load_recipe(p, ["teachers.3.training.seed=1"])
    assert load_recipe(p, ["teachers.0.training.seed=7"]).teachers[0].training.seed == 7


def test_bad_override_value_is_one_line():
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(None, ["training.learning_rate=[1"])


def test_saved_configs_are_location_free_and_load_again(tmp_path):
    """Paths inside a run directory are written as ${run_dir}/...; the file loads again from wherever the run is."""
    run = tmp_path / "run"
    (run / "stages" / "x").mkdir(parents=True)
    (run / "plan.json").write_text("{}")
    cfg = Config.model_validate({"run_dir": str(run), "data": {"corpus": str(run / "stages" / "c")},
                                 "training": {"output_dir": str(run / "stages" / "x")},
                                 "distill": {"teachers": [str(run / "stages" / "t"), "/elsewhere/t"]}})
    text = dump_yaml(cfg, run_dir=cfg.run_dir)
    assert str(tmp_path) not in text and "${run_dir}/stages/t" in text and "/elsewhere/t" in text
    moved = tmp_path / "moved"
    run.rename(moved)
    (moved / "stages" / "x" / "babyllama_config.yaml").write_text(text)
    again = load_config(moved / "stages" / "x" / "babyllama_config.yaml")
    assert again.training.output_dir == str(moved.resolve() / "stages" / "x")
    assert again.distill.teachers == [str(moved.resolve() / "stages" / "t"), "/elsewhere/t"]
    (tmp_path / "loose.yaml").write_text(text)
    with pytest.raises(UserError, match="needs the run dir"):
        load_config(tmp_path / "loose.yaml")


def test_eval_precision_and_the_former_bf16_flag():
    assert EvalConfig().precision == "auto"
    assert EvalConfig(bf16=True).precision == "bf16"
    assert EvalConfig(bf16=False).precision == "auto"
    assert EvalConfig(precision="exact_bf16").precision == "exact_bf16"
    with pytest.raises(ValueError, match="bf16: true and precision disagree"):
        EvalConfig(bf16=True, precision="fp32")


def test_yes_no_on_off_stay_words_as_in_yaml_1_2(tmp_path):
    """PyYAML reads YAML 1.1, where `no` is False: `eval_strategy: no` must arrive as the word."""
    from babyllama.config.loader import load_yaml, parse_override

    assert load_yaml("a: no\nb: yes\nc: on\nd: off\ne: true\nf: False\ng: 3\nh: [1, x]") == \
        {"a": "no", "b": "yes", "c": "on", "d": "off", "e": True, "f": False, "g": 3, "h": [1, "x"]}
    assert parse_override("training.eval_strategy=no") == (["training", "eval_strategy"], "no")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {preset: llama-tiny}\ntraining: {eval_strategy: no, output_dir: out}\n")
    assert load_config(cfg).training.eval_strategy == "no"
    assert load_config(cfg, ["training.eval_strategy=no"]).training.eval_strategy == "no"
