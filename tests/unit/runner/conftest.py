import json
import shutil
import zipfile

import pytest


@pytest.fixture
def data_root(tiny_raw, tmp_path):
    """corpus/ (the in-process corpus, with the smoke recipe's domain names) and an eval/ of tiny suites."""
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
    return root
