"""Fine-tune an extractive question-answering head on a trained CustomLM, and answer questions with it.

    finetune_qa(QuestionAnsweringArguments(model_name_or_path="outputs/demo/model", train_file="train.json"),
                QuestionAnsweringTrainingArguments(output_dir="outputs/qa"))
    model = AutoModelForQuestionAnswering.from_pretrained("outputs/qa")
    answer_questions(model, tokenizer, "Who jumps?", "The quick brown fox jumps.")  # [{"answer": "The quick ...

Data: SQuAD's train.json layout (data -> paragraphs -> context, qas -> id, question, answers[text,
answer_start]) or flat rows as the `datasets` "squad" set writes them (.json list or .jsonl; columns id,
context, question, answers{text, answer_start}). A question with no answers (SQuAD 2.0) trains its windows
to point at position 0; predictions always pick a span of the context.

Preprocessing follows transformers' question-answering examples: the question comes first (the decoder is
causal, so every context token has read it), a context longer than `max_length` is cut into windows that
overlap by `doc_stride` tokens, and a window that does not hold the whole answer points at position 0.
transformers 5 removed `pipeline("question-answering")`; `answer_questions` does its job for this model.
"""

import json
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding

from .arguments import ClassifierTrainingArguments, HeadArguments, _default
from .checkpoints import resolve_resume_checkpoint
from .finetune_head import load_head_model, read_rows, read_text, train_head


@dataclass
class QuestionAnsweringArguments(HeadArguments):
    train_file: str = field(
        metadata={"help": "SQuAD-format .json (data -> paragraphs -> qas), or .json/.jsonl rows with id, context, "
                          "question, answers{text, answer_start}."}
    )
    max_length: int = field(default=384, metadata={"help": "Tokens per window (question + part of the context)."})
    doc_stride: int = field(default=128, metadata={"help": "Tokens shared by consecutive windows of a long context."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer predicted, in tokens."})

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.doc_stride < self.max_length:
            raise ValueError(
                f"`doc_stride` ({self.doc_stride}) must be at least 0 and below `max_length` ({self.max_length}): "
                "it is the overlap between two windows of one context."
            )
        if self.max_answer_length < 1:
            raise ValueError(f"`max_answer_length` must be at least 1 token, got {self.max_answer_length}.")


@dataclass
class QuestionAnsweringTrainingArguments(ClassifierTrainingArguments):
    output_dir: str | None = _default("output_dir", "outputs/qa")


def _json_rows(text: str, where: str) -> list:
    """The rows of a JSON document (SQuAD's nested `data`, a list, one object) or of a JSON-lines file."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{where} line {number} is not JSON ({err}); give one SQuAD-format JSON document or one JSON "
                    "object per line."
                ) from err
        return rows
    if isinstance(document, dict) and "data" in document:  # SQuAD: data -> paragraphs -> qas
        paragraphs = [paragraph for article in document["data"] for paragraph in article.get("paragraphs", [])]
        return [{**qa, "context": p.get("context")} for p in paragraphs for qa in p.get("qas", [])]
    return document if isinstance(document, list) else [document]


def _check_row(row, number: int, where: str) -> dict:
    """A row with string `id`, `question`, `context` and `answers` {"text": [...], "answer_start": [...]}."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: row {number} is not a JSON object; each question is an object with id, context, "
                         "question and answers.")
    for name in ("question", "context"):
        if not isinstance(row.get(name), str):
            raise ValueError(f"{where}: question {row.get('id', number)!r} has no string field {name!r}; its fields "
                             f"are {sorted(row)}.")
    if not row["context"].strip():
        raise ValueError(f"{where}: question {row.get('id', number)!r} has an empty context; give the passage the "
                         "answer is taken from.")
    answers = row.get("answers")
    if isinstance(answers, list) and all(isinstance(a, dict) for a in answers):  # SQuAD's: [{text, answer_start}]
        answers = {"text": [a.get("text") for a in answers], "answer_start": [a.get("answer_start") for a in answers]}
    if not isinstance(answers, dict) or not isinstance(answers.get("text"), list):
        raise ValueError(f"{where}: question {row.get('id', number)!r} has no field 'answers' with lists 'text' and "
                         "'answer_start' (an empty list for an unanswerable question).")
    row_id = str(row.get("id", number))
    if len(answers["text"]) != len(answers.get("answer_start") or []):
        raise ValueError(f"{where}: question {row_id!r} has {len(answers['text'])} answers.text but not as many "
                         "answers.answer_start; give one character offset per answer text.")
    for text, start in zip(answers["text"], answers["answer_start"]):
        if not isinstance(text, str) or not isinstance(start, int) or row["context"][start : start + len(text)] != text:
            raise ValueError(
                f"{where}: question {row_id!r}: answers.answer_start {start!r} does not point at answers.text "
                f"{text!r} in its context; answer_start is the character offset of the answer in the context."
            )
    return {"id": row_id, "question": row["question"], "context": row["context"], "answers": answers}


def read_squad_file(path: str, argument: str = "train_file") -> list[dict]:
    """Rows `{"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}` of a SQuAD file."""
    text = read_text(path, argument)
    if Path(path).suffix.lower() not in (".json", ".jsonl"):
        raise ValueError(f"`{argument}` {path!r} is not a .json or .jsonl file (SQuAD format).")
    where = f"`{argument}` {path!r}"
    rows = [_check_row(row, number, where) for number, row in enumerate(_json_rows(text, where))]
    if not rows:
        raise ValueError(f"{where} holds no questions.")
    return rows


def question_answering_features(rows: list[dict], tokenizer, max_length: int, doc_stride: int):
    """Tokenised windows (question, part of the context): a dict with `input_ids`, `attention_mask`,
    `start_positions`, `end_positions`, plus `example_index` and `offset_mapping` (character spans of the
    context tokens, None for question tokens) that map predictions back to text."""
    questions = [row["question"].lstrip() for row in rows]
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - doc_stride
    for row, ids in zip(rows, tokenizer(questions, add_special_tokens=False)["input_ids"]):
        if len(ids) >= room:
            raise ValueError(
                f"Question {row['id']!r} has {len(ids)} tokens, which leaves no room for its context in a "
                f"`max_length` {max_length} window with `doc_stride` {doc_stride}; raise `max_length`, lower "
                "`doc_stride`, or shorten the question."
            )
    encoded = tokenizer(
        questions, [row["context"] for row in rows], truncation="only_second", max_length=max_length,
        stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
    )
    features = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                "start_positions": [], "end_positions": [], "example_index": [], "offset_mapping": []}
    for i, offsets in enumerate(encoded["offset_mapping"]):
        example = encoded["overflow_to_sample_mapping"][i]
        sequence_ids = encoded.sequence_ids(i)
        context = [k for k, s in enumerate(sequence_ids) if s == 1]
        answers = rows[example]["answers"]
        start = end = 0  # no answer in this window
        if answers["text"]:
            char_start = answers["answer_start"][0]
            char_end = char_start + len(answers["text"][0])
            if offsets[context[0]][0] <= char_start and offsets[context[-1]][1] >= char_end:
                start = next(k for k in context if offsets[k][1] > char_start)
                end = next(k for k in reversed(context) if offsets[k][0] < char_end)
        features["start_positions"].append(start)
        features["end_positions"].append(end)
        features["example_index"].append(example)
        features["offset_mapping"].append([o if s == 1 else None for o, s in zip(offsets, sequence_ids)])
    return features


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def best_answers(start_logits, end_logits, features: dict, rows: list[dict], max_answer_length: int) -> list[dict]:
    """Per row, the best span over its windows: `{"answer", "score", "start", "end"}` (character offsets).

    In each window the score is p(start) * p(end), softmaxes over the context tokens, with start <= end and at
    most `max_answer_length` tokens; logits may be padded past a window's tokens (the Trainer pads with -100)."""
    best = [None] * len(rows)
    for i, (example, offsets) in enumerate(zip(features["example_index"], features["offset_mapping"])):
        context = np.array([k for k, o in enumerate(offsets) if o is not None])
        scores = np.outer(_softmax(start_logits[i][context]), _softmax(end_logits[i][context]))  # (start, end)
        scores = np.tril(np.triu(scores), max_answer_length - 1)
        a, b = np.unravel_index(scores.argmax(), scores.shape)
        if best[example] is None or scores[a, b] > best[example][0]:
            best[example] = (float(scores[a, b]), offsets[context[a]][0], offsets[context[b]][1])
    answers = []
    for row, (score, start, end) in zip(rows, best):
        text = row["context"]
        while start < end and text[start].isspace():  # byte-level offsets include the space before a word
            start += 1
        answers.append({"answer": text[start:end], "score": score, "start": start, "end": end})
    return answers


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _f1(prediction: str, truth: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not predicted or not expected:
        return float(predicted == expected)
    return 0.0 if common == 0 else 2 * common / (len(predicted) + len(expected))


def squad_scores(predictions: list[str], rows: list[dict]) -> dict[str, float]:
    """`exact_match` and `f1` in percent, each the best over a question's reference answers ("" if none)."""
    exact = f1 = 0.0
    for prediction, row in zip(predictions, rows):
        truths = row["answers"]["text"] or [""]
        exact += max(float(normalize_answer(prediction) == normalize_answer(t)) for t in truths)
        f1 += max(_f1(prediction, t) for t in truths)
    return {"exact_match": 100 * exact / len(rows), "f1": 100 * f1 / len(rows)}


@torch.no_grad()
def answer_questions(model, tokenizer, questions: str | list[str], contexts: str | list[str], max_length: int = 384,
                     doc_stride: int = 128, max_answer_length: int = 30, batch_size: int = 16) -> list[dict]:
    """`{"answer", "score", "start", "end"}` for each (question, context) pair, as the removed
    `pipeline("question-answering")` returned them."""
    questions, contexts = ([q] if isinstance(q, str) else list(q) for q in (questions, contexts))
    rows = [{"id": str(i), "question": q, "context": c, "answers": {"text": [], "answer_start": []}}
            for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]
    features = question_answering_features(rows, tokenizer, max_length, doc_stride)
    model.eval()
    starts, ends = [], []
    for i in range(0, len(features["input_ids"]), batch_size):
        batch = tokenizer.pad({k: features[k][i : i + batch_size] for k in ("input_ids", "attention_mask")},
                              return_tensors="pt").to(model.device)
        outputs = model(**batch)
        starts += list(outputs.start_logits.float().cpu().numpy())
        ends += list(outputs.end_logits.float().cpu().numpy())
    return best_answers(starts, ends, features, rows, max_answer_length)


def finetune_qa(
    args: QuestionAnsweringArguments, training_args: QuestionAnsweringTrainingArguments
) -> dict[str, float]:
    """Train `qa_outputs` (and the body) on SQuAD-format questions; reports exact match and F1 on validation."""
    checkpoint = resolve_resume_checkpoint(training_args)
    train_rows, validation_rows = read_rows(args, read_squad_file, training_args.seed)
    model, tokenizer = load_head_model(args.model_name_or_path, AutoModelForQuestionAnswering)
    max_length = min(args.max_length, model.config.max_position_embeddings)
    if args.doc_stride >= max_length:
        raise ValueError(f"`doc_stride` ({args.doc_stride}) must be below the window of {max_length} tokens "
                         "(`max_length`, at most the model's `max_position_embeddings`).")
    columns = ("input_ids", "attention_mask", "start_positions", "end_positions")
    datasets, eval_features = {}, None
    for split, rows in (("train", train_rows), ("validation", validation_rows)):
        features = question_answering_features(rows, tokenizer, max_length, args.doc_stride)
        datasets[split] = Dataset.from_dict({k: features[k] for k in columns})
        eval_features = features

    def compute_metrics(eval_prediction) -> dict[str, float]:
        start_logits, end_logits = eval_prediction.predictions[:2]
        answers = best_answers(start_logits, end_logits, eval_features, validation_rows, args.max_answer_length)
        return squad_scores([a["answer"] for a in answers], validation_rows)

    return train_head(model, tokenizer, training_args, checkpoint, datasets["train"], datasets["validation"],
                      DataCollatorWithPadding(tokenizer), compute_metrics)
