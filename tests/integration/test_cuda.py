"""The CUDA path of every stage, on tiny models: device and precision resolution, pretraining (bf16, and fp16 with
loss scaling), the fused losses, teacher-cache building, cached and live distillation, zero-shot scoring in both
layouts (the prefix tree's 4D masks on the GPU), perplexity and fine-tuning. Each result is checked against the
same computation on the CPU where the two must agree. ``gpu``-marked: skipped where torch sees no CUDA device
(`benchmarks/gpu.sh` runs them on a GPU machine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import save_random_teachers, tiny_config, write_msgs

from babyllama.config import ModelConfig
from babyllama.models import build_model

pytestmark = pytest.mark.gpu

GPU = "cuda:0"
PAIRS = [("The cat sees the ball.", "The cat see the ball."), ("A dog likes her friend.", "A dog like her friend."),
         ("Who did the girl see?", "Who did the girl saw?"), ("The children wait.", "The children waits.")]


def gpu_precisions() -> list[str]:
    return ["bf16", "fp16"] if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else ["fp16"]


def test_device_precision_and_attention_resolve_to_this_gpu(monkeypatch):
    from babyllama.hardware import resolve_attention, resolve_device, resolve_precision

    assert resolve_device("auto") == resolve_device("cuda") == GPU
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count() - 1))  # a launcher's last rank
    assert resolve_device("cuda") == f"cuda:{torch.cuda.device_count() - 1}"
    assert resolve_device("cpu") == "cpu"
    want = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert resolve_precision("auto", GPU) == want
    assert resolve_attention("auto", want, device=GPU) == "sdpa"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_pretraining_on_the_gpu_learns(precision, tiny_prepared, tiny_tokenizer_dir, tmp_path):
    from babyllama.training.pretrain import train

    if precision not in gpu_precisions():
        pytest.skip(f"this GPU has no {precision}")
    out = tmp_path / precision
    train(tiny_config(tiny_prepared, tiny_tokenizer_dir, out, max_steps=40, eval_steps=20, precision=precision,
                      device="cuda"))
    m = json.loads((out / "metrics.json").read_text())
    assert m["device"].startswith("cuda") and m["precision"] == precision
    assert np.isfinite(m["eval_loss"]) and m["eval_loss"] < m["eval_loss_start"] - 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fused_losses_on_the_gpu_equal_autograd_on_the_cpu(dtype):
    from babyllama.distillation.loss import CachedTeacher, DistillationLoss
    from babyllama.losses import causal_ce, fused_causal_ce

    g = torch.Generator().manual_seed(3)
    B, L, V, K = 4, 33, 300, 16
    base = (torch.randn(B, L, V, generator=g) * 2).to(dtype)
    labels = torch.randint(0, V, (B, L), generator=g)
    labels[0, 5:9] = -100
    ids = torch.stack([torch.randperm(V, generator=g)[:K] for _ in range(B * L)]).view(B, L, K)
    w = torch.rand(B, L, K, generator=g) * 0.05
    tail, plogp = torch.rand(B, L, generator=g) * 0.2, torch.randn(B, L, generator=g)

    ref = base.float().requires_grad_()
    loss_r = DistillationLoss(0.5, 2.0, fused=False)(ref, labels, cached=CachedTeacher(ids, w, tail, plogp)).loss
    g_r, = torch.autograd.grad(loss_r, ref)

    on = base.to(GPU).requires_grad_()
    cached = CachedTeacher(ids.to(GPU), w.to(GPU), tail.to(GPU), plogp.to(GPU))
    loss_g = DistillationLoss(0.5, 2.0)(on, labels.to(GPU), cached=cached).loss
    g_g, = torch.autograd.grad(loss_g, on)
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    assert loss_g.item() == pytest.approx(loss_r.item(), rel=tol)
    assert g_g.dtype == dtype
    torch.testing.assert_close(g_g.float().cpu(), g_r, atol=tol, rtol=0.02)

    plain = base.to(GPU).requires_grad_()
    ce = fused_causal_ce(plain, labels.to(GPU))
    assert ce.item() == pytest.approx(causal_ce(base.float(), labels).item(), rel=tol)


@pytest.fixture(scope="module")
def teacher_dirs(tiny_tokenizer, tmp_path_factory):
    return save_random_teachers(tiny_tokenizer, tmp_path_factory.mktemp("cuda-teachers"))


def test_teacher_cache_built_on_the_gpu_equals_the_cpu_one(teacher_dirs, tiny_tokenizer, tmp_path):
    from babyllama.distillation.cache import CacheSpec, build_cache
    from babyllama.distillation.sources import load_teachers

    tokens = np.random.default_rng(0).integers(3, len(tiny_tokenizer), size=32 * 20 + 7).astype(np.uint16)
    caches = {}
    for device in ("cpu", GPU):
        teachers = [t.to(device) for t in load_teachers(teacher_dirs, tiny_tokenizer)]
        spec = CacheSpec(teachers=("a", "b"), tokenizer="t", data="d", seq_len=32, temperature=2.0, top_k=12,
                         sampled=0, window="sliding", seed=0, batch_size=8, precision="fp32",
                         device=torch.device(device).type)
        caches[device] = build_cache(teachers, tokens, tmp_path / device, spec, progress=False)
    a, b = caches["cpu"], caches[GPU]
    np.testing.assert_allclose(np.asarray(a.weight), np.asarray(b.weight), atol=1e-5)
    np.testing.assert_allclose(np.asarray(a.tail), np.asarray(b.tail), atol=1e-5)
    np.testing.assert_allclose(np.asarray(a.plogp), np.asarray(b.plogp), atol=1e-4)
    same = (np.asarray(a.ids) == np.asarray(b.ids)).mean()
    assert same > 0.99, same  # ids differ only where two entries tie to within float error


@pytest.mark.parametrize("cached", [True, False])
def test_distillation_on_the_gpu(cached, teacher_dirs, tiny_prepared, tiny_tokenizer_dir, tmp_path):
    from babyllama.config import Config
    from babyllama.distillation.trainer import distill

    base = tiny_config(tiny_prepared, tiny_tokenizer_dir, tmp_path / "student", max_steps=30, eval_steps=15,
                       device="cuda")
    cfg = Config.model_validate({**base.model_dump(), "distill": {
        "teachers": teacher_dirs, "cache": {"enabled": cached, "top_k": 16, "sampled": 8,
                                            "dir": str(tmp_path / "cache")}}})
    distill(cfg)
    m = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert m["device"].startswith("cuda") and np.isfinite(m["eval_loss"])
    assert m["eval_loss"] < m["eval_loss_start"]
    if cached:
        meta = json.loads(next((tmp_path / "cache").glob("train-*/meta.json")).read_text())
        assert meta["spec"]["device"] == "cuda"


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-tiny"])
def test_scoring_on_the_gpu_both_layouts_equal_the_cpu(preset, tiny_tokenizer):
    from babyllama.eval.scoring import Scorer, encode

    model = build_model(ModelConfig(preset=preset), tiny_tokenizer, seed=0).eval()
    reqs = [encode(tiny_tokenizer, "", " " + s) for pair in PAIRS for s in pair]
    reqs += [encode(tiny_tokenizer, "The cat sat on", " the mat."), encode(tiny_tokenizer, "Context here. ", "A")]
    cpu = Scorer(model, tiny_tokenizer, tree=False).logprobs(reqs)
    model.to(GPU)
    tree = Scorer(model, tiny_tokenizer, row_tokens=12)  # several rows of packed prefix trees, 4D masks
    assert tree.tree_ok()
    got_tree, got_padded = tree.logprobs(reqs), Scorer(model, tiny_tokenizer, tree=False).logprobs(reqs)
    assert got_tree == pytest.approx(cpu, abs=1e-3) and got_padded == pytest.approx(cpu, abs=1e-3)
    bf16 = Scorer(model, tiny_tokenizer, bf16=True).logprobs(reqs)
    assert bf16 == pytest.approx(cpu, abs=0.2)


def test_eval_of_models_and_the_ensemble_on_the_gpu_equals_the_cpu(teacher_dirs, tiny_prepared, tmp_path):
    from babyllama.config import EvalConfig
    from babyllama.eval.ensemble import EnsembleSpec
    from babyllama.eval.evaluate import evaluate_models

    suite = tmp_path / "pairs.jsonl"
    suite.write_text("".join(json.dumps({"sentence_good": g, "sentence_bad": b}) + "\n" for g, b in PAIRS))
    models = [*teacher_dirs, EnsembleSpec(tuple(teacher_dirs), "logits_mean", None, name="ensemble")]
    config = EvalConfig(suites=[str(suite), "perplexity"], ppl_max_tokens=2048, resamples=99)
    res = {d: evaluate_models(models, config.model_copy(update={"device": d}), tiny_prepared,
                              names=["llama", "gpt2", "ensemble"]) for d in ("cpu", "cuda")}
    for name in ("llama", "gpt2", "ensemble"):
        for split in ("dev", "test"):
            assert res["cuda"]["perplexity"][name][split]["ce"] == pytest.approx(
                res["cpu"]["perplexity"][name][split]["ce"], rel=1e-4)
        a, b = (res[d]["suites"][str(suite)]["per_model"][name] for d in ("cpu", "cuda"))
        assert a["decisions"] == b["decisions"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fine_tuning_on_the_gpu(precision, teacher_dirs, tmp_path):
    from babyllama.config import FinetuneConfig
    from babyllama.finetuning.run import finetune_models

    if precision not in gpu_precisions():
        pytest.skip(f"this GPU has no {precision}")
    data = write_msgs(tmp_path / "data", n_train=256, n_valid=64)
    cfg = FinetuneConfig(tasks=["main_verb_control"], seeds=[1], eval_root=str(data), max_epochs=3,
                         precision=precision, device="cuda", hparams={"default": {"batch_size": 16,
                                                                                  "learning_rate": 1e-3}})
    res = finetune_models(teacher_dirs[:1], cfg, log=lambda s: None)
    assert res["device"].startswith("cuda") and res["precision"] == precision
    run = res["models"][0]["tasks"]["main_verb_control"]["runs"][0]
    assert run["steps"] > 0 and run["examples"] == 16 * run["steps"] and np.isfinite(run["score"])


@pytest.mark.parametrize("model", [0, 1], ids=["llama", "gpt2"])
def test_compiled_fine_tuning_on_the_gpu(model, teacher_dirs, tmp_path):
    """finetune.compile on CUDA (inductor's GPU kernels): the training steps run one compiled graph for every batch
    shape and learn what the eager run learns."""
    import torch._dynamo

    from babyllama.config import FinetuneConfig
    from babyllama.finetuning.run import finetune_models

    data = write_msgs(tmp_path / "data", n_train=200, n_valid=64)  # 200 = 12 x 16 + 8: a short last batch too
    out = {}
    for flag in (False, True):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        cfg = FinetuneConfig(tasks=["main_verb_control"], seeds=[1], eval_root=str(data), max_epochs=4,
                             precision=gpu_precisions()[0], device="cuda", compile=flag,
                             hparams={"default": {"batch_size": 16, "learning_rate": 3e-3}})
        out[flag] = finetune_models(teacher_dirs[model:model + 1], cfg, log=lambda s: None)
        assert out[flag]["models"][0]["compiled"] is flag
        stats = dict(torch._dynamo.utils.counters["stats"])
        assert stats.get("unique_graphs", 0) == (1 if flag else 0), stats
    torch._dynamo.reset()
    eager, comp = (out[f]["models"][0]["tasks"]["main_verb_control"]["runs"][0] for f in (False, True))
    assert comp["steps"] == eager["steps"] > 0
    assert abs(eager["metrics"]["accuracy"] - comp["metrics"]["accuracy"]) <= 0.1, (eager["history"],
                                                                                    comp["history"])


def test_smoke_recipe_runs_every_stage_on_the_gpu(data_root, tmp_path):
    """`babyllama run recipes/smoke.yaml` with nothing said about the device: every stage finds the GPU."""
    from helpers import REPO, run_cli

    rd = tmp_path / "run"
    r = run_cli("run", REPO / "recipes" / "smoke.yaml", "--data-root", data_root, "--run-dir", rd,
                "--set", "tokenizer.vocab_size=300")
    assert r.returncode == 0, r.stderr[-3000:]
    trained = [json.loads(p.read_text()) for p in rd.glob("stages/*/metrics.json")]
    assert len(trained) == 4 and all(m["device"].startswith("cuda") for m in trained)
    fine_tuned = [json.loads(p.read_text()) for p in rd.glob("stages/finetune-*/finetune.json")]
    assert fine_tuned and all(f["device"].startswith("cuda") for f in fine_tuned)
    scored = [json.loads(p.read_text()) for p in rd.glob("stages/eval-*/eval.json")]
    assert len(scored) == 5 and all(e["device"].startswith("cuda") for e in scored)
    assert "## Verdict" in (rd / "report.md").read_text()
