"""Time-budgeted training (`--max_train_time`), sizing for the budget, the run's own tokenizer and its story."""

import functools
import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from hf_custom_lm.cli.train import interrupted_message
from hf_custom_lm.training import LMTrainingArguments, build_callbacks, train_language_model
from hf_custom_lm.training import language_model, sizing
from hf_custom_lm.training.language_model import build_config
from hf_custom_lm.training.tokenization import train_tokenizer
from hf_custom_lm.training.budget import TimeBudgetCallback, TrainingClock, budget_lr_lambda, parse_duration
from hf_custom_lm.training.arguments import DEFAULT_LEARNING_RATE
from hf_custom_lm.training.sizing import SHAPES, SIZING_FILE, TOKENS_PER_PARAMETER, size_for_budget, size_model

from .test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    corpus_text,
    data_arguments,
    logged,
    model_arguments,
    tokenizer_dir,
    training_arguments,
)


def test_durations_read_seconds_minutes_and_hours():
    assert [parse_duration(text) for text in ("300", "45s", "10m", "1.5h", 12)] == [300, 45, 600, 5400, 12]
    for bad in ("", "ten minutes", "-5m", "0", "3d"):
        with pytest.raises(ValueError, match="not a positive duration.*10m"):
            parse_duration(bad)


def test_learning_rate_warms_up_holds_and_decays_to_zero_over_the_budget():
    clock = TrainingClock(budget=100.0)
    factor = budget_lr_lambda(clock, warmup_fraction=0.1, decay_fraction=0.3)

    def at(spent):
        clock.synced = spent
        return factor(0)

    assert at(5) == pytest.approx(0.5) and at(10) == 1.0 and at(50) == 1.0 and at(70) == 1.0
    assert at(85) == pytest.approx(0.5) and at(100) == 0.0 and at(130) == 0.0
    by_steps = budget_lr_lambda(TrainingClock(budget=100.0), 0.1, 0.3, max_steps=20)  # no time spent
    assert by_steps(10) == 1.0 and by_steps(17) == pytest.approx(0.5) and by_steps(20) == 0.0


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError, match="warmup_steps.*fraction of the budget"):
        LMTrainingArguments(output_dir="x", max_train_time="1m", warmup_steps=10, report_to=[])
    with pytest.raises(ValueError, match="lr_decay_fraction"):
        LMTrainingArguments(output_dir="x", max_train_time="1m", lr_decay_fraction=1.5, report_to=[])
    with pytest.raises(ValueError, match="train_time_clock"):
        TrainingClock(10, kind="sundial")


def test_a_budgeted_run_stops_at_the_budget_with_the_rate_decayed_and_a_full_evaluation(tmp_path, tokenizer_dir):
    args = training_arguments(tmp_path, max_steps=-1, max_train_time="6s", warmup_steps=0.1, early_stopping_patience=3,
                              eval_strategy="steps", load_best_model_at_end=True, save_total_limit=1)
    data_args = data_arguments(tmp_path, max_eval_samples=2)
    metrics = train_language_model(model_arguments(tokenizer_dir), data_args, args)
    run = Path(args.output_dir)
    assert metrics["train_stop_reason"] == "time budget"
    assert 6 <= metrics["train_clock_seconds"] < 6 * 1.5  # the step that crosses the budget is the last
    rates = logged(run, "learning_rate")
    assert max(rates) == pytest.approx(3e-3, rel=0.05) and rates[-1] < 0.35 * 3e-3  # decayed by the end
    periodic = [e for e in json.loads((run / "trainer_state.json").read_text())["log_history"] if "eval_loss" in e]
    assert len(periodic) >= 2  # at fractions of the budget, the last at its end, then the full one
    assert (run / "loss_curve.png").is_file() and "train_tokens" in metrics and metrics["train_steps"] > 0


def test_resume_continues_the_remaining_budget(tmp_path):
    """The clock's time is saved with each checkpoint and restored as the offset of the resumed run's clock."""
    checkpoint = tmp_path / "checkpoint-7"
    checkpoint.mkdir()
    state = {"stateful_callbacks": {"TimeBudgetCallback": {"args": {}, "attributes": {"elapsed": 42.5}}}}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    args = LMTrainingArguments(output_dir=str(tmp_path), max_train_time="2m", report_to=[])
    (budget,) = [cb for cb in build_callbacks(args, checkpoint) if isinstance(cb, TimeBudgetCallback)]
    assert budget.clock.budget == 120 and budget.clock.elapsed() == 42.5
    assert budget.state()["attributes"]["elapsed"] == 42.5


def test_sizing_picks_a_larger_model_for_a_larger_budget(tmp_path):
    small = size_for_budget(0.5, batch_size=2, block_size=16, vocab_size=512)
    large = size_for_budget(36_000, batch_size=2, block_size=16, vocab_size=512)
    # nothing fits half a second: the smallest shape
    assert (small.hidden_size, small.num_hidden_layers) == SHAPES[0][:2]
    assert large.parameters > small.parameters and "tokens per parameter" in large.reason
    assert large.expected_tokens >= large.parameters * TOKENS_PER_PARAMETER or large.hidden_size == SHAPES[-1][0]


def test_a_short_text_lets_the_sizing_choose_a_model_it_goes_over_less_often(monkeypatch):
    monkeypatch.setattr(sizing, "time_training_step", lambda *args, **kwargs: 0.01)  # every shape alike
    budget = 29.3  # 2,930 steps of 8 x 128: 3.0M tokens, 1.2M parameters' worth at 2.5 a parameter
    size = functools.partial(size_for_budget, budget, batch_size=8, block_size=128, vocab_size=8192)
    tokens = size().expected_tokens
    assert 2.9e6 < tokens < 3.1e6
    plenty = size(train_tokens=tokens)  # one pass over the text: the usual rule
    short = size(train_tokens=tokens // 3)  # three passes: a larger shape, down to 0.8 tokens a parameter
    assert (size().hidden_size, plenty.hidden_size, plenty.num_hidden_layers) == (96, 96, 3)
    assert (short.hidden_size, short.num_hidden_layers) == (192, 3)
    assert sizing.DATA_LIMITED_TOKENS_PER_PARAMETER * short.parameters <= tokens < 2.5 * short.parameters
    assert "0.8 tokens per parameter going over the text 2 times or more" in short.reason
    assert "3 epochs" in short.reason
    # two processes see twice the tokens in the same steps: the shape of twice the budget
    assert size(processes=2).expected_tokens == 2 * tokens
    assert size(processes=2).hidden_size == size_for_budget(2 * budget, 8, 128, 8192).hidden_size == 128


def test_a_text_the_budget_would_go_over_too_often_takes_a_larger_shape(monkeypatch):
    # a step's time grows with the shape, as on a real machine: 192 x 3 0.0576 s, 256 x 4 0.1024 s
    monkeypatch.setattr(sizing, "time_training_step", lambda config, *args, **kwargs: 1e-4 * config.hidden_size
                        * config.num_hidden_layers)
    size = functools.partial(size_for_budget, 225, batch_size=8, block_size=128, vocab_size=8192)
    # 192 x 3 sees 4.0M tokens, 1.4 a parameter (256 x 4: 2.25M, 0.43): four passes over 1M tokens are within
    # the cap
    within = size(train_tokens=1_000_000)
    assert (within.hidden_size, within.num_hidden_layers) == (192, 3) and "4 epochs" in within.reason
    # eight passes over 0.5M tokens are not: 256 x 4 goes over it 4.5 times, at 0.43 tokens a parameter
    short = size(train_tokens=500_000)
    assert (short.hidden_size, short.num_hidden_layers) == (256, 4)
    assert short.expected_tokens <= sizing.MAX_EPOCHS * 500_000 < within.expected_tokens
    assert short.expected_tokens < sizing.DATA_LIMITED_TOKENS_PER_PARAMETER * short.parameters
    assert "4.5 epochs" in short.reason and f"more than {sizing.MAX_EPOCHS:g} times" in short.reason
    # a text so short that every shape goes over it too often: the largest shape that sees 0.4 tokens a
    # parameter (384 x 6 would see 1.0M tokens, 0.07 a parameter)
    tiny = size(train_tokens=10_000)
    assert (tiny.hidden_size, tiny.num_hidden_layers) == (256, 4)
    assert tiny.expected_tokens >= sizing.MIN_TOKENS_PER_PARAMETER * tiny.parameters


def test_auto_size_is_chosen_logged_and_saved_for_resume(tmp_path, tokenizer_dir, caplog):
    args = training_arguments(tmp_path, max_steps=2, max_train_time="1h", eval_strategy="no",
                              load_best_model_at_end=False)
    with caplog.at_level("INFO", logger="hf_custom_lm"):
        train_language_model(model_arguments(tokenizer_dir, config_name=None), data_arguments(tmp_path), args)
    saved = json.loads((Path(args.output_dir) / SIZING_FILE).read_text())
    config = json.loads((Path(args.output_dir) / "config.json").read_text())
    assert config["hidden_size"] == saved["hidden_size"] and "epochs of the training text" in saved["reason"]
    assert any("Model size for the budget" in record.getMessage() for record in caplog.records)
    assert (Path(args.output_dir) / "checkpoint-2").is_dir()  # the run's end is saved, evaluation or not


def test_auto_size_brings_its_learning_rate_unless_one_is_given(tmp_path, tokenizer_dir):
    # A one-second budget fits no shape but the smallest, whose measured rate is not the default; with no
    # warm-up and no decay the logged rate is the peak however long the step takes.
    assert SHAPES[0][4] != DEFAULT_LEARNING_RATE
    common = dict(max_steps=1, max_train_time="1s", eval_strategy="no", load_best_model_at_end=False, warmup_steps=0,
                  lr_decay_fraction=0)
    unset = training_arguments(tmp_path / "unset", learning_rate=None, **common)
    assert unset.learning_rate == DEFAULT_LEARNING_RATE  # until the model is sized
    train_language_model(model_arguments(tokenizer_dir, config_name=None), data_arguments(tmp_path), unset)
    saved = json.loads((Path(unset.output_dir) / SIZING_FILE).read_text())
    assert (saved["hidden_size"], saved["num_hidden_layers"]) == SHAPES[0][:2]
    assert unset.learning_rate == saved["learning_rate"] == SHAPES[0][4]
    assert logged(Path(unset.output_dir), "learning_rate")[0] == pytest.approx(SHAPES[0][4])

    # A rate given as a flag, or set in code after the arguments were made, is kept.
    for given in (training_arguments(tmp_path / "flag", learning_rate=5e-4, **common),
                  training_arguments(tmp_path / "code", learning_rate=None, **common)):
        given.learning_rate = 5e-4
        Path(given.output_dir).mkdir(parents=True)
        size_model(given, data_arguments(tmp_path), AutoTokenizer.from_pretrained(tokenizer_dir), resuming=False)
        assert given.learning_rate == 5e-4


def test_own_text_gets_its_own_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setattr(language_model, "OWN_TOKENIZER_MIN_BYTES", 10_000)
    monkeypatch.setattr(language_model, "OWN_TOKENIZER_VOCAB_SIZE", 300)
    text = tmp_path / "my.txt"
    text.write_text(corpus_text()[:40_000])
    args = training_arguments(tmp_path, max_steps=2, eval_strategy="no", load_best_model_at_end=False)
    data_args = data_arguments(tmp_path, train_file=str(text), validation_file=None)  # one file: a held-out slice
    train_language_model(model_arguments(None, tokenizer_name=None), data_args, args)
    saved = json.loads((Path(args.output_dir) / "tokenizer" / "tokenizer.json").read_text())
    assert len(saved["model"]["vocab"]) == 300
    assert json.loads((Path(args.output_dir) / "config.json").read_text())["vocab_size"] == 300


def test_a_preset_takes_its_vocabulary_from_the_tokenizer(tokenizer):
    assert build_config("small", None, tokenizer).vocab_size == len(tokenizer)
    small = train_tokenizer(dataset=[corpus_text()[:40_000]], vocab_size=300)
    assert build_config("small", None, small).vocab_size == len(small)  # no rows that no token reaches
    assert build_config("small", f"vocab_size={len(small) + 4}", small).vocab_size == len(small) + 4


def test_small_text_keeps_the_bundled_tokenizer_and_says_why(tmp_path, caplog):
    text = tmp_path / "small.txt"
    text.write_text(corpus_text()[:20_000])
    args = training_arguments(tmp_path, max_steps=1, eval_strategy="no", load_best_model_at_end=False)
    data_args = data_arguments(tmp_path, train_file=str(text), validation_file=None)
    with caplog.at_level("INFO", logger="hf_custom_lm"):
        train_language_model(model_arguments(None, tokenizer_name=None), data_args, args)
    assert any("Keeping the bundled tokenizer" in record.getMessage() for record in caplog.records)
    assert not (Path(args.output_dir) / "tokenizer").exists()


def test_interrupted_run_names_its_checkpoint_and_the_resume_command(tmp_path, tokenizer_dir):
    assert "nothing to resume" in interrupted_message(str(tmp_path / "empty"), [])
    args = training_arguments(tmp_path, max_steps=4, save_steps=2, eval_steps=2)
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    message = interrupted_message(args.output_dir, ["--output_dir", args.output_dir, "--max_steps", "9"])
    assert "checkpoint-4" in message and message.endswith(f"--output_dir {args.output_dir} --max_steps 9 --resume")


def test_muon_trains_the_hidden_matrices_and_resumes(tmp_path, tokenizer_dir):
    from hf_custom_lm.training.optimizers import MuonWithAdamW

    args = training_arguments(tmp_path, max_steps=6, save_steps=3, eval_steps=3, hidden_optimizer="muon")
    metrics = train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    losses = logged(Path(args.output_dir), "loss")
    assert losses[-1] < losses[0] and metrics["eval_loss"] < losses[0]
    import torch

    state = torch.load(Path(args.output_dir) / "checkpoint-6" / "optimizer.pt", weights_only=True)
    assert set(state) == {"muon", "adamw"} and state["muon"]["state"]  # Muon holds momentum for the matrices
    resumed = training_arguments(tmp_path, max_steps=8, save_steps=3, eval_steps=3, hidden_optimizer="muon",
                                 resume=True)
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), resumed)
    assert json.loads((Path(args.output_dir) / "trainer_state.json").read_text())["global_step"] == 8
    assert issubclass(MuonWithAdamW, torch.optim.Optimizer)


def test_muon_and_adamw_follow_the_scheduler_after_their_state_is_loaded():
    # accelerate's `prepare` reloads the optimizer's state: the schedule must still reach both optimizers
    import torch

    from hf_custom_lm.training.optimizers import MuonWithAdamW

    matrix, bias = torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.zeros(4))
    optimizer = MuonWithAdamW([{"params": [matrix]}], [{"params": [bias]}], lr=0.1)
    optimizer.load_state_dict(optimizer.state_dict())
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    assert optimizer.muon.param_groups[0]["lr"] == optimizer.adamw.param_groups[0]["lr"] == 0.05


def test_run_summary_names_the_tensorboard_folder(tmp_path, tokenizer_dir, caplog):
    args = training_arguments(tmp_path, max_steps=2, eval_strategy="no", load_best_model_at_end=False,
                              report_to=["tensorboard"])
    with caplog.at_level("INFO", logger="hf_custom_lm"):
        train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TensorBoard logs: ")]
    folder = Path(line.removeprefix("TensorBoard logs: ").split(" (")[0])
    assert folder.parent == Path(args.output_dir) / "runs" and any(folder.glob("events.out.tfevents.*"))
    assert any(r.getMessage().startswith("Stopped by max_steps after 2 steps") for r in caplog.records)


def test_training_refuses_a_plain_llama_folder_in_one_line(tmp_path, tokenizer_dir):
    from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM, to_llama

    to_llama(CustomLMForCausalLM(CustomLMConfig.from_preset("tiny", vocab_size=600))).save_pretrained(tmp_path / "l")
    args = training_arguments(tmp_path, max_steps=1)
    with pytest.raises(ValueError, match="holds a 'llama' model.*from_llama"):
        train_language_model(model_arguments(tokenizer_dir, model_name_or_path=str(tmp_path / "l")),
                             data_arguments(tmp_path), args)
