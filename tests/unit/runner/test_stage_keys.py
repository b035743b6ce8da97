"""Every training stage of every recipe and config keeps the key it had when stage_keys.json was recorded (at
fa396fc, before the loss object and the divergences; recipes/gpu-10m.yaml when it was added): a refactoring that
changed one would re-train finished runs. A deliberate change of a recipe updates the file, in the same commit,
with the reason."""

import json
from pathlib import Path

import pytest

from babyllama.config import DistillConfig, load_config, load_recipe
from babyllama.runner.plan import baseline_spec, config_key, stage_config
from helpers import REPO

RECORDED = json.loads((Path(__file__).parent / "stage_keys.json").read_text())


def recipe_keys(path: str) -> dict[str, str]:
    rec = load_recipe(REPO / path, data_root="DATA")
    rd, corpus, tok = Path("/run"), Path("/run/corpus"), Path("/run/tok")
    keys = {}
    for seed in rec.seeds:
        for spec in rec.teachers:
            keys[f"teacher:{spec.name}:s{seed}"] = config_key(stage_config(rec, spec, rd, corpus, tok, seed, False), [])
        keys[f"baseline:s{seed}"] = config_key(stage_config(rec, baseline_spec(rec), rd, corpus, tok, seed, False), [])
        keys[f"student:s{seed}"] = config_key(stage_config(rec, rec.student, rd, corpus, tok, seed, True), [])
    return keys


@pytest.mark.parametrize("path", sorted(RECORDED))
def test_stage_keys_are_unchanged(path):
    if path.startswith("recipes/"):
        assert recipe_keys(path) == RECORDED[path]
    else:
        assert config_key(load_config(REPO / path, data_root="DATA"), []) == RECORDED[path]


def test_every_recipe_and_config_is_recorded():
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "recipes").glob("*.yaml")}
    on_disk |= {str(p.relative_to(REPO)) for p in (REPO / "configs").glob("*/*.yaml") if "finetune" not in p.parts}
    assert on_disk == set(RECORDED)


def test_a_divergence_keys_only_the_settings_it_reads():
    def key(**distill):
        cfg = load_config(None, [f"distill.{k}={v}" for k, v in distill.items()])
        return config_key(cfg, [])

    base = key()
    assert key(jsd_beta=0.9, skew=0.3, ab_alpha=0.1) == base  # forward KL reads none of them
    assert key(divergence="jsd") != base
    assert key(divergence="jsd", skew=0.3) == key(divergence="jsd")
    assert key(divergence="jsd", jsd_beta=0.9) != key(divergence="jsd")
    assert key(divergence="alpha_beta", ab_beta=0.2) != key(divergence="alpha_beta")
    assert key(divergence="skew_kl", skew=0.2) != key(divergence="skew_kl")
    assert DistillConfig().divergence == "forward_kl"
