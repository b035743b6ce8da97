"""What a training stage prints: one formatted line per log and per evaluation, no raw dicts, no second bar."""

from types import SimpleNamespace

from transformers import TrainerState

from babyllama.progress import Bar, clock, number
from babyllama.training.trainer import ReadableProgress


def state(step, max_steps=220, epoch=None):
    s = TrainerState()
    s.global_step, s.max_steps, s.epoch = step, max_steps, epoch if epoch is not None else step / 44
    return s


def test_train_and_eval_lines_are_formatted(capsys, monkeypatch):
    import babyllama.training.trainer as trainer

    now = [100.0]
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: now[0])
    cb = ReadableProgress(tokens_per_step=4096)
    args = SimpleNamespace()
    cb.on_train_begin(args, state(0), None)
    now[0] = 110.0
    cb.on_log(args, state(40), None, logs={"loss": 3.90712, "ce": 6.6921, "kl": 0.28071, "learning_rate": 0.00234,
                                           "grad_norm": 0.4645, "epoch": 0.91})
    cb.on_log(args, state(44), None, logs={"eval_loss": 6.6978, "eval_kl": 0.2388, "eval_objective": 3.828,
                                           "eval_runtime": 1.686, "eval_samples_per_second": 151.2})
    cb.on_log(args, state(220), None, logs={"train_runtime": 186.2, "train_loss": 3.162})
    cb.on_train_end(args, state(220), None)  # closes the bar without its own summary line
    out = capsys.readouterr().out.splitlines()
    # 40 steps of 4,096 tokens in 10 s; 180 steps left at 0.25 s each
    assert out[0] == ("train  step 40/220 (epoch 0.91) | loss 3.907 | CE 6.692 | KL 0.2807 | lr 0.00234 | "
                      "grad norm 0.4645 | 16,384 tok/s | ETA 0:00:45")
    assert out[1] == "eval   step 44/220 (epoch 1.00) | CE 6.698 | KL 0.2388 | objective 3.828 | 1.7 s"
    assert out[2] == "training done: 220 steps in 0:03:06, mean training loss 3.162"
    assert not any("{" in line or "'" in line for line in out) and len(out) == 3, out


def test_numbers_and_clock():
    assert number(0.00054) == "5.40e-04" and number(5.8043) == "5.804" and number(12000) == "12,000"
    assert number(0.0) == "0" and number(True) == "True"
    assert clock(3725.4) == "1:02:05" and clock(None) == "-"


def test_a_bar_in_a_log_file_is_one_summary_line(capsys):
    with Bar(8, "teacher cache", "batches") as bar:  # stderr is not a terminal under pytest
        for _ in range(8):
            bar.update(1, "1,260 tok/s")
    cap = capsys.readouterr()
    assert cap.out.startswith("teacher cache: 8 batches in 0:00:0") and cap.out.endswith("(1,260 tok/s)\n")
    assert "\r" not in cap.err and "%|" not in cap.err
