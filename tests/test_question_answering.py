"""The extractive question-answering head: Llama's outputs and loss, SQuAD files read and windowed, fine-tuning
from a language-model folder, and the saved folder loaded with `trust_remote_code=True` where the package is not."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForQuestionAnswering, LlamaForQuestionAnswering

from hf_custom_lm import CustomLMForCausalLM, CustomLMForQuestionAnswering
from hf_custom_lm.cli import main as cli
from hf_custom_lm.folders import save_model_folder
from hf_custom_lm.hub.llama import to_llama_config
from hf_custom_lm.training.finetune_head import hold_out
from hf_custom_lm.training.finetune_qa import (
    QuestionAnsweringArguments,
    answer_questions,
    best_answers,
    question_answering_features,
    read_squad_file,
    squad_scores,
)

from .conftest import tiny_config
from .test_remote_code import BLOCK_PACKAGE

# (context, question, answer): the answer occurs once in its context.
FACTS = [
    ("Anna keeps a red kite in the garden shed.", "What does Anna keep?", "a red kite"),
    ("The train to Oslo leaves at nine in the morning.", "When does the train leave?", "at nine in the morning"),
    ("Tom painted the old fence green last summer.", "What colour is the fence?", "green"),
    ("A small dog named Biscuit sleeps by the fire.", "What is the dog called?", "Biscuit"),
    ("The bakery on Mill Street sells rye bread.", "Where is the bakery?", "on Mill Street"),
    ("Maria plays the cello in a string quartet.", "Which instrument does Maria play?", "the cello"),
]


def squad_document(facts=FACTS) -> dict:
    """SQuAD's nested train.json layout: data -> paragraphs -> context, qas."""
    paragraphs = [
        {"context": c, "qas": [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": c.index(a)}]}]}
        for i, (c, q, a) in enumerate(facts)
    ]
    return {"version": "1.1", "data": [{"title": "facts", "paragraphs": paragraphs}]}


def write_squad(path, facts=FACTS) -> str:
    path.write_text(json.dumps(squad_document(facts)))
    return str(path)


@pytest.fixture(scope="module")
def language_model(tmp_path_factory, tokenizer):
    """A tiny language-model folder as `train` writes it (weights, config, tokenizer, code, auto_map)."""
    torch.manual_seed(0)
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    model = CustomLMForCausalLM(tiny_config(vocab_size=len(tokenizer), **ids))
    return str(save_model_folder(model, tokenizer, tmp_path_factory.mktemp("lm") / "model"))


def run_without_package(code: str, tmp_path) -> dict:
    """Run `code` in a fresh `python -I` that cannot import hf_custom_lm; it writes its result to OUT as JSON."""
    script = tmp_path / "remote.py"
    script.write_text(BLOCK_PACKAGE + f"OUT = {str(tmp_path / 'out.json')!r}\n" + code)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"),
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((tmp_path / "out.json").read_text())


@pytest.mark.parametrize("padded", [False, True])
def test_outputs_and_loss_equal_llama_question_answering(padded, seeded):
    model = CustomLMForQuestionAnswering(tiny_config()).eval()
    llama = LlamaForQuestionAnswering(to_llama_config(model.config)).eval()
    # Llama's QA head keeps the old `transformer.` prefix for its body.
    state = {k.replace("model.", "transformer.", 1): v for k, v in model.state_dict().items()}
    llama.load_state_dict(state, strict=True)
    input_ids = torch.randint(2, 512, (3, 13))
    attention_mask = torch.ones_like(input_ids)
    if padded:
        attention_mask[1, 9:] = 0
    labels = dict(start_positions=torch.tensor([1, 4, 30]), end_positions=torch.tensor([3, 8, 2]))  # 30: ignored
    with torch.no_grad():
        ours = model(input_ids, attention_mask=attention_mask, **labels)
        theirs = llama(input_ids, attention_mask=attention_mask, **labels)
    real = attention_mask.bool()
    torch.testing.assert_close(ours.start_logits[real], theirs.start_logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.end_logits[real], theirs.end_logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=0)


def test_classic_switches_give_start_and_end_logits_and_a_loss(seeded):
    model = CustomLMForQuestionAnswering(tiny_config(**{"position_embedding_type": "sinusoidal",
                                                         "norm_type": "layernorm", "mlp_type": "plain"})).eval()
    input_ids = torch.randint(2, 512, (2, 7))
    start, end = torch.tensor([1, 2]), torch.tensor([3, 2])
    out = model(input_ids, start_positions=start, end_positions=end)
    assert out.start_logits.shape == out.end_logits.shape == (2, 7)
    expected = (torch.nn.functional.cross_entropy(out.start_logits, start)
                + torch.nn.functional.cross_entropy(out.end_logits, end)) / 2
    torch.testing.assert_close(out.loss, expected)
    _, start_logits, _ = model(input_ids, start_positions=start, end_positions=end, return_dict=False)
    torch.testing.assert_close(start_logits, out.start_logits)


def test_nested_squad_and_flat_rows_read_the_same(tmp_path):
    nested = read_squad_file(write_squad(tmp_path / "train.json"))
    flat = [{"id": f"q{i}", "title": "facts", "context": c, "question": q,
             "answers": {"text": [a], "answer_start": [c.index(a)]}} for i, (c, q, a) in enumerate(FACTS)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in flat))
    (tmp_path / "list.json").write_text(json.dumps(flat))
    assert read_squad_file(str(tmp_path / "train.jsonl")) == nested == read_squad_file(str(tmp_path / "list.json"))
    assert nested[3] == {"id": "q3", "question": FACTS[3][1], "context": FACTS[3][0],
                         "answers": {"text": ["Biscuit"], "answer_start": [FACTS[3][0].index("Biscuit")]}}


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda p: p["qas"][0]["answers"][0].update(answer_start=3), r"q0.*answers.answer_start 3 does not point"),
        (lambda p: p["qas"][0]["answers"].append({"text": "Anna"}), r"q0.*answers.answer_start"),
        (lambda p: p["qas"][0].pop("question"), r"q0.*no string field 'question'"),
        (lambda p: p["qas"][0].pop("answers"), r"q0.*no field 'answers'"),
        (lambda p: p.update(context=" "), r"q0.*empty context"),
    ],
)
def test_bad_squad_files_are_refused_naming_file_and_field(tmp_path, edit, match):
    document = squad_document()
    edit(document["data"][0]["paragraphs"][0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=rf"`train_file` '{path}'.*{match}"):
        read_squad_file(str(path))
    with pytest.raises(ValueError, match="doc_stride"):
        QuestionAnsweringArguments(model_name_or_path="lm", train_file=str(path), max_length=64, doc_stride=64)


def test_long_context_is_cut_into_windows_and_labels_point_at_the_answer(tokenizer):
    filler = " ".join(f"Sentence {i} says nothing." for i in range(30))
    context = f"{filler} The treasure lies under the old oak tree. {filler}"
    row = {"id": "long", "question": "Where is the treasure?", "context": context,
           "answers": {"text": ["under the old oak tree"], "answer_start": [context.index("under the old oak tree")]}}
    features = question_answering_features([row], tokenizer, max_length=48, doc_stride=16)
    windows = len(features["input_ids"])
    assert windows > 5 and all(len(ids) <= 48 for ids in features["input_ids"])
    holding = [i for i in range(windows) if features["start_positions"][i] > 0]
    assert holding, "no window holds the answer"
    for i in holding:
        ids = features["input_ids"][i][features["start_positions"][i] : features["end_positions"][i] + 1]
        assert tokenizer.decode(ids).strip() == "under the old oak tree"
    assert all(features["end_positions"][i] == 0 for i in range(windows) if i not in holding)
    # the contexts of consecutive windows overlap, so together they cover the whole context
    spans = [[o for o in offsets if o is not None] for offsets in features["offset_mapping"]]
    assert spans[0][0][0] == 0 and spans[-1][-1][1] == len(context)
    assert all(later[0][0] < earlier[-1][1] for earlier, later in zip(spans, spans[1:]))


def test_a_question_too_long_for_the_window_is_refused(tokenizer):
    row = {"id": "wordy", "question": "Why " * 40 + "?", "context": "Because.",
           "answers": {"text": [], "answer_start": []}}
    with pytest.raises(ValueError, match=r"Question 'wordy' has \d+ tokens.*raise `max_length`, lower `doc_stride`"):
        question_answering_features([row], tokenizer, max_length=48, doc_stride=16)


def test_best_answer_keeps_within_max_answer_length_and_picks_the_best_window():
    offsets = [None, (0, 3), (3, 7), (7, 11), (11, 15)]  # token 0: the question; byte-level spans hold the space
    features = {"example_index": [0, 0], "offset_mapping": [offsets, offsets]}
    rows = [{"context": "aaa bbb ccc ddd"}]
    start = np.array([[0, 9, 0, 0, 0, -100], [0, 0, 0, 0, 3, -100]], dtype=float)  # -100: the Trainer's padding
    end = np.array([[0, 0, 0, 9, 0, -100], [0, 0, 0, 0, 3, -100]], dtype=float)
    wide, narrow = (best_answers(start, end, features, rows, n)[0] for n in (3, 2))
    assert (wide["answer"], wide["start"], wide["end"]) == ("aaa bbb ccc", 0, 11)
    assert (narrow["start"], narrow["end"]) == (12, 15)  # the space before "ddd" left out
    assert narrow["answer"] == "ddd"  # the first window's best span is now 2 tokens and less sure than the second's
    assert wide["score"] > narrow["score"] > 0


def test_hold_out_draws_a_disjoint_seeded_share():
    train, validation = hold_out(list(range(20)), 10, seed=0)
    assert len(validation) == 2 and sorted(train + validation) == list(range(20))
    assert hold_out(list(range(20)), 10, seed=0) == (train, validation)


def test_squad_scores_normalise_case_articles_and_punctuation():
    rows = [{"answers": {"text": ["The Red Kite"]}}, {"answers": {"text": ["nine o'clock", "at nine"]}}]
    expected = {"exact_match": 50.0, "f1": pytest.approx(100 * (1 + 2 / 3) / 2)}
    assert squad_scores(["red kite!", "nine"], rows) == expected


@pytest.mark.slow
def test_finetune_qa_command_learns_the_answers_and_the_folder_loads_without_the_package(
    tmp_path, language_model, tokenizer
):
    out = tmp_path / "qa"
    status = cli([
        "finetune-qa", "--model_name_or_path", language_model, "--train_file", write_squad(tmp_path / "train.json"),
        "--validation_file", write_squad(tmp_path / "dev.json", FACTS[:3]), "--output_dir", str(out),
        "--max_length", "64", "--doc_stride", "16", "--max_steps", "24", "--eval_steps", "24", "--save_steps", "24",
        "--per_device_train_batch_size", "6", "--learning_rate", "1e-2", "--warmup_steps", "0", "--report_to", "none",
        "--disable_tqdm", "true", "--bf16", "false", "--seed", "0", "--logging_steps", "10",
    ])
    assert status == 0
    metrics = json.loads((out / "eval_results.json").read_text())
    assert metrics["eval_exact_match"] == 100.0 and metrics["eval_f1"] == 100.0  # dev questions were trained on
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForQuestionAnswering"] == "modeling_custom_lm.CustomLMForQuestionAnswering"

    model = AutoModelForQuestionAnswering.from_pretrained(out)
    contexts, questions, expected = zip(*FACTS)
    answers = answer_questions(model, tokenizer, list(questions), list(contexts), max_length=64, doc_stride=16)
    assert [a["answer"] for a in answers] == list(expected)
    assert all(contexts[i][a["start"] : a["end"]] == a["answer"] and 0 < a["score"] <= 1 for i, a in enumerate(answers))

    ids = tokenizer(questions[0], contexts[0], return_tensors="pt").input_ids
    with torch.no_grad():
        local = model(ids).start_logits[0].tolist()
    remote = run_without_package(f"""
import json, torch
from transformers import AutoModelForQuestionAnswering
model = AutoModelForQuestionAnswering.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(torch.tensor([{ids[0].tolist()}])).start_logits[0].tolist()
json.dump({{"class": type(model).__module__ + "." + type(model).__name__, "start_logits": logits}}, open(OUT, "w"))
""", tmp_path)
    assert remote["class"].startswith("transformers_modules.") and remote["class"].endswith(
        "CustomLMForQuestionAnswering"
    )
    torch.testing.assert_close(torch.tensor(remote["start_logits"]), torch.tensor(local), atol=1e-5, rtol=0)
