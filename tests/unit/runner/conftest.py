import json
import shutil
import zipfile

import pytest


@pytest.fixture
def data_root(tiny_raw, tmp_path):
    """corpus/ (the in-process corpus, with the smoke recipe's domain names) and an eval/ of tiny suites and tiny
    RTE and WSC files (the smoke recipe fine-tunes on them)."""
    root = tmp_path / "data"
    for split in ("train", "dev", "test"):
        (root / "corpus" / split).mkdir(parents=True)
        for src, dom in zip(sorted((tiny_raw / split).iterdir()), ("aochildes", "cbt", "simple_wikipedia")):
            shutil.copy(src, root / "corpus" / split / f"{dom}.{split}")
    pair = json.dumps({"sentence_good": "A cat.", "sentence_bad": "A cats."}) + "\n"
    for suite in ("blimp_fast", "supplement_fast"):
        (root / "eval" / suite).mkdir(parents=True)
        (root / "eval" / suite / "p.jsonl").write_text(pair)
    (root / "eval" / "ewok_fast").mkdir()
    with zipfile.ZipFile(root / "eval" / "ewok_fast" / "ewok_fast.zip", "w") as z:
        z.writestr("ewok_fast/d.jsonl", json.dumps({"Context1": "c", "Target1": "a", "Target2": "b"}) + "\n")
    glue = root / "eval" / "glue_filtered"
    glue.mkdir()
    for split, n in (("train", 8), ("valid", 4)):
        rte = [{"sentence1": "a cat sees the ball.", "sentence2": "a cat sees.", "label": i % 2} for i in range(n)]
        wsc = [{"text": "the girl sees her friend.", "span1_index": 0, "span2_index": 3, "span1_text": "girl",
                "span2_text": "her", "label": i % 2} for i in range(n)]
        (glue / f"rte.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rte))
        (glue / f"wsc.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in wsc))
    return root
