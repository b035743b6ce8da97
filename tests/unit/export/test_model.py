"""An exported folder is a clean Hugging Face model with a card whose metadata carries the eval results."""

import json

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from babyllama.config import ModelConfig
from babyllama.errors import UserError
from babyllama.export.card import model_card
from babyllama.export.model import export_model
from babyllama.models import build_model


@pytest.fixture
def model_dir(tiny_tokenizer, tmp_path):
    d = tmp_path / "stages" / "student-s1-abc"
    build_model(ModelConfig(preset="llama-tiny"), tiny_tokenizer, seed=0).save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    (d / "checkpoint-10").mkdir()
    (d / "checkpoint-10" / "optimizer.pt").write_bytes(b"state")
    (d / "training_args.bin").write_bytes(b"pickle")
    (d / "metrics.json").write_text(json.dumps({"params": 123456, "global_step": 10, "train_tokens_seen": 5120,
                                                "precision": "bf16", "eval_loss_best": 4.2}))
    (d / "run_info.json").write_text(json.dumps({"status": "complete", "kind": "distill", "git_sha": "abc",
                                                 "teachers": ["${run_dir}/stages/teacher-llama-x"]}))
    (d / "babyllama_config.yaml").write_text("model: {preset: llama-tiny}\n")
    ev = tmp_path / "stages" / "eval-student-s1-def"
    ev.mkdir()
    (ev / "run_info.json").write_text(json.dumps({"status": "complete", "model": "${run_dir}/stages/" + d.name}))
    (ev / "eval.json").write_text(json.dumps({"suites": {"blimp_filtered": {"macro": {
        "acc": 0.61234, "ci": [0.6, 0.62], "items": 900}}}, "perplexity": {"dev": {"ppl": 55.5, "bpw": 2.1}}}))
    return d


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_export_is_clean_loadable_and_carded(model_dir, tmp_path):
    out = export_model(model_dir, tmp_path / "export", name="babyllama-tiny")
    names = {p.name for p in out.rglob("*")}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"} <= names
    assert not {n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl")) or n.startswith("checkpoint")}
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tok.model_max_length == model.config.max_position_embeddings == cfg["model_max_length"] == 256
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    meta = front_matter((out / "README.md").read_text())
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"] and "knowledge-distillation" in meta["tags"]
    results = meta["model-index"][0]["results"]
    assert results[0]["dataset"]["type"] == "blimp_filtered" and results[0]["metrics"][0]["value"] == 0.6123
    assert results[1]["metrics"][0] == {"type": "perplexity", "value": 55.5, "verified": False}
    body = (out / "README.md").read_text()
    assert "teacher-llama-x" in body and "model: {preset: llama-tiny}" in body and "| blimp_filtered | 61.2 |" in body
    with pytest.raises(UserError, match="exists and is not empty"):
        export_model(model_dir, out)


def test_card_without_results_has_no_model_index():
    meta = front_matter(model_card("m", license="mit", datasets=["BabyLM"], info={}, metrics=None, evaluation=None,
                                   config_yaml=None, teachers=[]))
    assert "model-index" not in meta and meta["license"] == "mit"


def test_trained_models_save_their_tokenizer_for_their_context(tiny_prepared, tiny_tokenizer_dir, tmp_path):
    from babyllama.training.pretrain import train
    from helpers import tiny_config

    out = tmp_path / "run"
    train(tiny_config(tiny_prepared, tiny_tokenizer_dir, out, max_steps=2, eval_strategy="no"))
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert cfg["model_max_length"] == 256 and cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert AutoTokenizer.from_pretrained(out).model_max_length == 256


def test_results_of_babyllama_eval_feed_the_card(model_dir, tmp_path):
    from babyllama.export.model import evaluation_from_results

    block = {"macro": {"acc": 0.5, "ci": [0.4, 0.6], "items": 10}}
    results = {"models": [str(model_dir), "other"], "suites": {"blimp_fast": {"per_model": {str(model_dir): block,
                                                                                         "other": block}}},
               "perplexity": {}}
    ev = evaluation_from_results(results, model_dir)
    assert ev["suites"] == {"blimp_fast": block}
    with pytest.raises(UserError, match="not .*elsewhere"):
        evaluation_from_results(results, tmp_path / "elsewhere")
    out = export_model(model_dir, tmp_path / "e2", evaluation=ev)
    meta = front_matter((out / "README.md").read_text())
    assert [r["dataset"]["type"] for r in meta["model-index"][0]["results"]] == ["blimp_fast"]
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert "local_files_only" not in cfg and "is_local" not in cfg


def test_parameter_counts_print_as_the_hub_does():
    from babyllama.export.card import parameter_count

    assert [parameter_count(n) for n in (412, 40_000, 41_234, 4_153_000, 58_300_000, 1_200_000_000)] == [
        "412", "40k", "41.2k", "4.15M", "58.3M", "1.2B"]
    card = model_card("m", license="mit", datasets=["BabyLM"], info={}, metrics={"params": 41_234, "train_tokens_seen": 1},
                      evaluation=None,
                      config_yaml=None, teachers=[])
    assert "A 41.2k-parameter causal language model" in card


def test_a_distilled_models_card_names_its_divergence():
    info = {"kind": "distill", "config": {"distill": {"alpha": 0.5, "temperature": 2.0, "divergence": "jsd",
                                                      "jsd_beta": 0.1, "skew": 0.1, "kl_reduction": "per_token",
                                                      "ensemble": "logits_mean", "cache": {"enabled": True}}}}
    card = model_card("m", license="mit", datasets=["BabyLM"], info=info, metrics=None, evaluation=None,
                      config_yaml=None, teachers=["a", "b"])
    assert ("- distillation: alpha 0.5, T 2.0, divergence `jsd (jsd_beta 0.1)`, reduction `per_token`, ensemble "
            "`logits_mean`, from a teacher cache") in card
    older = {"kind": "distill", "config": {"distill": {"alpha": 0.5, "temperature": 2.0, "kl_reduction": "paper",
                                                       "ensemble": "logits_mean"}}}
    assert "divergence `forward_kl`" in model_card("m", license="mit", datasets=[], info=older, metrics=None,
                                                   evaluation=None, config_yaml=None, teachers=[])


def test_the_card_prints_the_2025_tasks_in_their_own_units():
    ev = {"suites": {
        "blimp_fast": {"macro": {"acc": 0.6123, "ci": (0.6, 0.62), "items": 13400}},
        "entity_tracking_fast": {"macro": {"acc": 0.421, "ci": (0.40, 0.44), "items": 3152, "metric": "accuracy"}},
        "wug_adj": {"macro": {"acc": 0.7387, "ci": (0.66, 0.79), "items": 200, "metric": "spearman"}},
        "reading": {"macro": {"acc": 2.83, "ci": (1.6, 4.4), "items": 1726, "metric": "eye tracking score"}}}}
    card = model_card("m", license="mit", datasets=[], info={}, metrics=None, evaluation=ev, config_yaml=None,
                      teachers=[])
    assert "| wug_adj | 0.739 | [0.660, 0.790] | 200 | Spearman's rho |" in card
    assert "| entity_tracking_fast | 42.1 | [40.0, 44.0] | 3152 | macro accuracy (%) |" in card
    assert "| reading | 2.830 | [1.600, 4.400] | 1726 | eye tracking score, % |" in card
    results = front_matter(card)["model-index"][0]["results"]
    assert [r["metrics"][0]["type"] for r in results] == ["accuracy", "accuracy", "spearmanr", "r_squared_gain"]
    assert results[2]["dataset"]["name"] == "Wug adjective nominalization (BabyLM 2025)"
    assert results[0]["task"]["name"] == "Zero-shot minimal pairs"
