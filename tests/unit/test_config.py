from pathlib import Path

import pytest

from babyllama.config import Config, describe, dump_yaml, load_config
from babyllama.errors import UserError

REPO = Path(__file__).resolve().parents[2]


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
    cfg = Config()
    assert Config.model_validate(__import__("yaml").safe_load(dump_yaml(cfg))) == cfg
    keys = [k for k, _, doc in describe()]
    assert "training.learning_rate" in keys and "distill.kl_reduction" in keys
    assert all(doc for _, _, doc in describe() if not _.startswith("data_root")), "every field has a description"


def test_every_shipped_config_validates():
    """Every YAML under configs/ is a Config; recipes are checked by the pipeline's own test."""
    files = sorted((REPO / "configs").rglob("*.yaml"))
    assert files, "configs/ holds YAML files"
    for f in files:
        load_config(f, data_root="/data")
