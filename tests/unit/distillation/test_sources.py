import torch

from babyllama.config import CacheConfig
from babyllama.data.dataset import build_datasets
from babyllama.distillation.sources import LiveTeachers, cached_datasets, load_teachers
from babyllama.losses import ensemble_log_probs
from babyllama.tokenizer import tokenizer_hash
from helpers import save_random_teachers, tiny_config


def cached_setup(tiny_prepared, tiny_tokenizer_dir, tiny_tokenizer, tmp_path):
    """A cached-distillation config over two random teachers, the teachers, the datasets and their provenance."""
    cfg = tiny_config(tiny_prepared, tiny_tokenizer_dir, tmp_path / "s")
    cfg.distill.teachers = save_random_teachers(tiny_tokenizer, tmp_path)
    cfg.distill.cache = CacheConfig(enabled=True, top_k=16, sampled=8, dir=str(tmp_path / "cache"))
    train_ds, eval_ds, prov = build_datasets(cfg.data, tiny_tokenizer, cfg.training.seed)
    prov["tokenizer_hash"] = tokenizer_hash(tiny_tokenizer)
    models = load_teachers(cfg.distill.teachers, tiny_tokenizer)
    return cfg, models, train_ds, eval_ds, prov


def test_a_cache_built_under_bf16_is_not_reused_by_an_fp32_run(tiny_prepared, tiny_tokenizer_dir, tiny_tokenizer,
                                                               tmp_path):
    cfg, models, train_ds, eval_ds, prov = cached_setup(tiny_prepared, tiny_tokenizer_dir, tiny_tokenizer, tmp_path)
    built = {}
    for precision in ("fp32", "bf16", "fp32"):
        cfg.training.precision = precision
        tr, _, _ = cached_datasets(cfg, models, train_ds, eval_ds, dict(prov))
        built.setdefault(precision, set()).add(tr.cache.dir)
        assert tr.cache.meta["spec"]["precision"] == precision
    assert len(built["fp32"]) == 1 and built["fp32"] != built["bf16"]  # fp32 reused its own, never bf16's
    cfg.training.batch_size = 4  # the batches seed the sampled entries: another cache
    tr, _, _ = cached_datasets(cfg, models, train_ds, eval_ds, dict(prov))
    assert tr.cache.dir not in built["fp32"] | built["bf16"]


def test_a_pinned_cache_seed_shares_one_cache_among_student_seeds(tiny_prepared, tiny_tokenizer_dir, tiny_tokenizer,
                                                                   tmp_path):
    cfg, models, train_ds, eval_ds, prov = cached_setup(tiny_prepared, tiny_tokenizer_dir, tiny_tokenizer, tmp_path)

    def cache_dir(student_seed):
        cfg.training.seed = student_seed
        tr, _, _ = cached_datasets(cfg, models, train_ds, eval_ds, dict(prov))
        return tr.cache.dir, tr.cache.meta["spec"]["seed"]

    assert cache_dir(1) != cache_dir(2)  # by default each student seed draws its own samples
    cfg.distill.cache.seed = 0
    (a, seed_a), (b, seed_b) = cache_dir(1), cache_dir(2)
    assert a == b and seed_a == seed_b == 0


def test_live_teachers_give_each_teachers_logits_and_the_loss_ensembles_them(tiny_tokenizer, tmp_path):
    from babyllama.config import DistillConfig
    from babyllama.distillation.loss import DistillationLoss

    models = load_teachers(save_random_teachers(tiny_tokenizer, tmp_path), tiny_tokenizer)
    live = LiveTeachers(models, "cpu", "fp32")
    x = torch.randint(3, len(tiny_tokenizer), (2, 9))
    with torch.no_grad():
        direct = [m(input_ids=x).logits for m in models]
        want = ensemble_log_probs(direct, 2.0, "probs_mean")
    got = live.logits(x)
    assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, direct))
    loss_fn = DistillationLoss.from_config(DistillConfig(temperature=2.0, ensemble="probs_mean"))
    assert torch.allclose(loss_fn.teacher_log_probs(got), want, atol=1e-6)


def test_live_teachers_build_no_kv_cache_whatever_their_config_says(tiny_tokenizer, tmp_path):
    """A teacher saved with use_cache: true (a hub model's default) would build a KV cache on every call, which
    the step never reads and a compiled layer cannot trace through: the teachers are called with use_cache=False."""
    models = load_teachers(save_random_teachers(tiny_tokenizer, tmp_path), tiny_tokenizer)
    calls = []
    for m in models:
        m.config.use_cache = True
        m.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(kwargs.get("use_cache")),
                                    with_kwargs=True)
    LiveTeachers(models, "cpu", "fp32").logits(torch.randint(3, len(tiny_tokenizer), (2, 9)))
    assert calls == [False, False]
