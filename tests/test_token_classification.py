"""The token-classification head: Llama's logits and loss, CoNLL and JSON files read, tags aligned to tokens,
fine-tuning from a language-model folder, and the saved folder in `pipeline("token-classification")`, also with
`trust_remote_code=True` where the package is not installed."""

import json

import pytest
import torch
from transformers import LlamaForTokenClassification, pipeline

from hf_custom_lm import CustomLMForTokenClassification
from hf_custom_lm.cli import main as cli
from hf_custom_lm.hub.llama import to_llama_config
from hf_custom_lm.training.finetune_token_classifier import (
    read_tagged_file,
    token_classification_features,
)

from .conftest import tiny_config
from .test_question_answering import language_model, run_without_package  # noqa: F401

SENTENCES = [
    ("Anna lives in Paris", "B-PER O O B-LOC"),
    ("Tom moved to Oslo", "B-PER O O B-LOC"),
    ("Maria visited Rome", "B-PER O B-LOC"),
    ("Paul Smith works in Berlin", "B-PER I-PER O O B-LOC"),
    ("Lena flew to Madrid", "B-PER O O B-LOC"),
    ("Omar stayed in Cairo", "B-PER O O B-LOC"),
]


def write_conll(path, sentences=SENTENCES) -> str:
    """CoNLL-2003's four columns (token, POS, chunk, tag), a -DOCSTART- line, blank lines between sentences."""
    blocks = ["-DOCSTART- -X- -X- O\n"]
    for text, tags in sentences:
        blocks.append("".join(f"{word} NNP B-NP {tag}\n" for word, tag in zip(text.split(), tags.split())))
    path.write_text("\n".join(blocks))
    return str(path)


@pytest.mark.parametrize("padded", [False, True])
def test_logits_and_loss_equal_llama_token_classification(padded, seeded):
    model = CustomLMForTokenClassification(tiny_config(num_labels=3)).eval()
    llama_config = to_llama_config(model.config)
    llama_config.num_labels = 3
    llama = LlamaForTokenClassification(llama_config).eval()
    llama.load_state_dict(model.state_dict(), strict=True)
    input_ids = torch.randint(2, 512, (2, 11))
    attention_mask = torch.ones_like(input_ids)
    labels = torch.randint(0, 3, (2, 11))
    if padded:
        attention_mask[1, 7:] = 0
        labels[1, 7:] = -100
    with torch.no_grad():
        ours = model(input_ids, attention_mask=attention_mask, labels=labels)
        theirs = llama(input_ids, attention_mask=attention_mask, labels=labels)
    real = attention_mask.bool()
    torch.testing.assert_close(ours.logits[real], theirs.logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=0)


def test_classic_switches_give_token_logits_and_a_loss_that_skips_minus_100(seeded):
    model = CustomLMForTokenClassification(tiny_config(
        num_labels=4, position_embedding_type="sinusoidal", norm_type="layernorm", mlp_type="plain",
    )).eval()
    input_ids = torch.randint(2, 512, (2, 6))
    labels = torch.tensor([[0, 1, 2, 3, -100, -100], [3, -100, 1, 1, 0, 2]])
    out = model(input_ids, labels=labels)
    assert out.logits.shape == (2, 6, 4)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), labels.flatten()))
    _, logits = model(input_ids, labels=labels, return_dict=False)
    torch.testing.assert_close(logits, out.logits)


def test_conll_and_json_lines_read_the_same(tmp_path):
    conll = read_tagged_file(write_conll(tmp_path / "train.txt"))
    rows = [{"tokens": text.split(), "tags": tags.split()} for text, tags in SENTENCES]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert conll == rows == read_tagged_file(str(tmp_path / "train.jsonl"))


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("bad.txt", "Anna B-PER\nlives\n", r"line 2 \('lives'\) has a token but no tag"),
        ("bad.jsonl", '{"tokens": ["Anna", "lives"], "tags": ["B-PER"]}\n', r"row 1 needs `tokens` and `tags`"),
        ("bad.json", '{"words": ["Anna"]}', r"row 1 needs `tokens` and `tags`"),
    ],
)
def test_bad_tagged_files_are_refused_naming_file_and_place(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"`train_file` '{path}' {match}"):
        read_tagged_file(str(path))


def test_each_word_tags_its_first_token_only(tokenizer):
    rows = [{"tokens": ["Anna", "unbelievably", "loves", "Reykjavik"], "tags": ["B-PER", "O", "O", "B-LOC"]}]
    label2id = {"B-LOC": 0, "B-PER": 1, "O": 2}
    features = token_classification_features(rows, tokenizer, label2id, max_length=64)
    ids, labels = features["input_ids"][0], features["labels"][0]
    assert len(ids) > 4  # some words take several tokens
    tagged = [i for i, label in enumerate(labels) if label != -100]
    assert [labels[i] for i in tagged] == [1, 2, 2, 0]
    # each tagged token starts its word; the tokens up to the next tagged one spell the word
    bounds = tagged + [len(ids)]
    assert [tokenizer.decode(ids[a:b]).strip() for a, b in zip(bounds, bounds[1:])] == rows[0]["tokens"]


@pytest.mark.slow
def test_finetune_token_classifier_command_gives_a_pipeline_that_loads_without_the_package(
    tmp_path, language_model  # noqa: F811
):
    out = tmp_path / "tagger"
    status = cli([
        "finetune-token-classifier", "--model_name_or_path", language_model,
        "--train_file", write_conll(tmp_path / "train.txt"), "--validation_file", write_conll(tmp_path / "dev.txt"),
        "--output_dir", str(out), "--max_steps", "24", "--eval_steps", "24", "--save_steps", "24",
        "--per_device_train_batch_size", "6", "--learning_rate", "1e-2", "--warmup_steps", "0", "--report_to", "none",
        "--disable_tqdm", "true", "--bf16", "false", "--seed", "0", "--logging_steps", "10",
    ])
    assert status == 0
    assert json.loads((out / "eval_results.json").read_text())["eval_accuracy"] == 1.0  # dev repeats train
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "B-LOC", "1": "B-PER", "2": "I-PER", "3": "O"}
    assert config["auto_map"]["AutoModelForTokenClassification"] == "modeling_custom_lm.CustomLMForTokenClassification"

    def groups(entities):
        return [(e["entity_group"], e["word"].strip()) for e in entities]

    tagger = pipeline("token-classification", model=str(out), aggregation_strategy="first")
    local = tagger("Paul Smith works in Berlin")
    assert groups(local) == [("PER", "Paul Smith"), ("LOC", "Berlin")]
    remote = run_without_package(f"""
import json
from transformers import pipeline
tagger = pipeline("token-classification", model={str(out)!r}, trust_remote_code=True, aggregation_strategy="first")
entities = tagger("Paul Smith works in Berlin")
keys = ("entity_group", "word", "start", "end")
entities = [{{k: e[k] for k in keys}} for e in entities]
json.dump({{"class": type(tagger.model).__module__, "entities": entities}}, open(OUT, "w"))
""", tmp_path)
    assert remote["class"].startswith("transformers_modules.")
    assert remote["entities"] == [{k: e[k] for k in ("entity_group", "word", "start", "end")} for e in local]
