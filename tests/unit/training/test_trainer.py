import json

import pytest

from babyllama.errors import UserError
from babyllama.training.trainer import prepare_output_dir, relocate_best_checkpoint


def test_output_dir_checks(tmp_path):
    assert prepare_output_dir(tmp_path / "new") is None
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        prepare_output_dir(tmp_path / "file")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="holds no babyllama checkpoint"):
        prepare_output_dir(tmp_path / "theirs")
    done = tmp_path / "done"
    done.mkdir()
    (done / "run_info.json").write_text(json.dumps({"status": "complete"}))
    with pytest.raises(UserError, match="already holds a finished run"):
        prepare_output_dir(done)
    assert prepare_output_dir(done, overwrite=True) is None


def test_a_moved_run_resumes_with_its_best_checkpoint(tmp_path):
    """trainer_state.json names the best checkpoint by path; after a move it must name the new place (the Trainer
    drops a best checkpoint it cannot find, and with it the best model)."""
    old, new = tmp_path / "old" / "run", tmp_path / "new" / "run"
    for step in (10, 20):
        (new / f"checkpoint-{step}").mkdir(parents=True)
        (new / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(
            {"global_step": step, "best_model_checkpoint": str(old / "checkpoint-10")}))
    assert prepare_output_dir(new) == str(new / "checkpoint-20")
    state = json.loads((new / "checkpoint-20" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == str(new / "checkpoint-10")
    before = (new / "checkpoint-10" / "trainer_state.json").read_text()
    relocate_best_checkpoint(new / "checkpoint-10", new)  # a path that exists is left alone ... once right
    relocate_best_checkpoint(new / "checkpoint-10", new)
    assert json.loads((new / "checkpoint-10" / "trainer_state.json").read_text())["best_model_checkpoint"] == \
        str(new / "checkpoint-10") != json.loads(before)["best_model_checkpoint"]
