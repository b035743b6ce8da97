"""`babyllama export MODEL_DIR OUT`: a clean Hugging Face folder of a trained model.

Safetensors weights, ``config.json``, ``generation_config.json``, the tokenizer (its ``model_max_length`` the model's
context, its class ``PreTrainedTokenizerFast``) and a model card; no checkpoints, optimizer states or pickles.
``--push-to-hub REPO`` uploads the folder with ``huggingface_hub`` (needs network and a token).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..io import atomic_write, read_json, require_folders
from ..models import load_model
from ..runinfo import EVAL_FILE, METRICS_FILE, read_run_info
from ..tokenizer import finalize_tokenizer_config, load_tokenizer, model_context
from .card import model_card


def find_evaluation(model_dir: Path) -> dict | None:
    """The eval results of a model stage of a run directory: the sibling eval stage whose run_info names it."""
    for info_file in sorted(model_dir.parent.glob("eval-*/run_info.json")):
        info = read_json(info_file) or {}
        if Path(str(info.get("model", ""))).name == model_dir.name and info.get("status") == "complete":
            return read_json(info_file.parent / EVAL_FILE)
    return None


def evaluation_from_results(results: dict, model_dir: str | Path) -> dict:
    """One model's evaluation out of `babyllama eval --json` results (the model given by its path, or the only
    one), in the runner's eval.json form."""
    names = results.get("models", [])
    match = [n for n in names if Path(n).resolve() == Path(model_dir).resolve()] or (names if len(names) == 1 else [])
    if not match:
        raise UserError(f"the eval results name the models {', '.join(names)}, not {model_dir}; pass the JSON of "
                        f"`babyllama eval {model_dir} ... --json FILE`")
    name = match[0]
    return {"suites": {s: b["per_model"][name] for s, b in results.get("suites", {}).items()
                       if name in b.get("per_model", {})},
            "perplexity": results.get("perplexity", {}).get(name)}


def export_model(model_dir: str | Path, out: str | Path, *, overwrite: bool = False, name: str | None = None,
                 license: str = "apache-2.0", datasets: list[str] | None = None,
                 evaluation: dict | None = None) -> Path:
    src, out = Path(model_dir), Path(out)
    require_folders([out], "export folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; choose another folder or pass --overwrite")
    model = load_model(src)
    tok = load_tokenizer(src)
    info = read_run_info(src) or {}
    evaluation = evaluation or find_evaluation(src)
    config_file = src / "babyllama_config.yaml"
    teachers = [Path(t).name for t in info.get("teachers", [])]
    name = name or src.name
    with atomic_write(out, directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        finalize_tokenizer_config(tmp, model_context(model.config))
        (tmp / "README.md").write_text(model_card(
            name, license=license, datasets=datasets or ["BabyLM"], info=info, metrics=read_json(src / METRICS_FILE),
            evaluation=evaluation, config_yaml=config_file.read_text() if config_file.is_file() else None,
            teachers=teachers))
    return out


def push_to_hub(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload an exported folder (network and a Hugging Face token needed; nothing else here touches the hub)."""
    from huggingface_hub import HfApi, constants

    constants.HF_HUB_OFFLINE = False  # babyllama runs offline; an explicit upload is the one exception
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload from babyllama")
    return commit.commit_url
