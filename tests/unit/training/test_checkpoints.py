import json

from babyllama.training.checkpoints import MARKER, checkpoint_problem, checkpoints, last_good_checkpoint


def _ckpt(out, step, state=True, files=None, marker=True):
    d = out / f"checkpoint-{step}"
    d.mkdir(parents=True)
    for name, data in (files or {"model.safetensors": b"w" * 8, "optimizer.pt": b"o" * 4}).items():
        (d / name).write_bytes(data)
    if state:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if marker:
        listed = {p.name: p.stat().st_size for p in d.iterdir()}
        (d / MARKER).write_text(json.dumps({"step": step, "files": listed}))
    return d


def test_newest_whole_checkpoint_wins_and_unfinished_ones_go(tmp_path):
    _ckpt(tmp_path, 5)
    _ckpt(tmp_path, 10)
    _ckpt(tmp_path, 15, state=False, marker=False)  # killed before trainer_state.json
    half = _ckpt(tmp_path, 20)
    (half / "optimizer.pt").write_bytes(b"o")  # truncated after its marker: sizes disagree
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint name: ignored
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-20", "checkpoint-15", "checkpoint-10",
                                                        "checkpoint-5"]
    assert checkpoint_problem(half) == "optimizer.pt has 1 bytes, 4 were written"
    said = []
    assert last_good_checkpoint(tmp_path, say=said.append) == str(tmp_path / "checkpoint-10")
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-5"] and len(said) == 2


def test_a_checkpoint_without_marker_counts_when_its_state_parses(tmp_path):
    d = _ckpt(tmp_path, 7, marker=False)
    assert checkpoint_problem(d) is None
    (d / "trainer_state.json").write_text('{"global_st')  # cut short while written
    assert checkpoint_problem(d) == "no readable trainer_state.json"
    assert last_good_checkpoint(tmp_path, say=lambda _: None) is None and not d.exists()
