"""Datasets are read as they are; answers kept byte for byte; contexts are exactly the rendered templates."""

from __future__ import annotations

import json

import pytest
from conftest import BASE_TEMPLATE, JUST_EVAL, config_text, write_config, write_jsonl

from compute.core.artifact.reader import open_artifact
from compute.core.config import load_config
from compute.core.datasets import load_examples
from compute.engine.run import run
from compute.engine.sides import load_tokenizer

PICKED = [0, 21, 61]  # 21 and 61 end in a run of newlines


@pytest.fixture(scope="module")
def just_eval_records():
    return json.loads(JUST_EVAL.read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def just_eval_run(request, model_pairs, just_eval_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"je-{request.param}")
    dataset = folder / "just-eval.json"
    dataset.write_text(json.dumps([just_eval_records[i] for i in PICKED]), encoding="utf-8")
    config = load_config(write_config(folder, config_text(model_pairs[request.param], dataset, folder / "out")))
    return config, open_artifact(run(config))


def test_the_shipped_just_eval_file_reads_as_urial_format(just_eval_records):
    examples = load_examples(JUST_EVAL)
    assert len(examples) == 1000
    assert examples[21].instruction == just_eval_records[21]["pure_input"]
    assert examples[21].response == just_eval_records[21]["output"][0]
    assert examples[21].response.endswith("\n\n\n\n\n")
    assert examples[21].id == "21"


def test_answers_from_the_file_are_kept_byte_for_byte(just_eval_run, just_eval_records):
    config, artifact = just_eval_run
    assert list(artifact.read("examples/id")) == [str(i) for i in PICKED]
    assert list(artifact.read("examples/prompt")) == [just_eval_records[i]["pure_input"] for i in PICKED]
    responses = list(artifact.read("examples/response"))
    assert responses == [just_eval_records[i]["output"][0] for i in PICKED]
    tokenizer = load_tokenizer("aligned", config.aligned)
    for e, response in enumerate(responses):
        ids = artifact.read("positions/token_id", artifact.example_rows(e))
        assert tokenizer.decode(ids) == response  # o is the answer, tokenised once, alone


def test_contexts_are_the_rendered_templates_with_one_bos(just_eval_run, just_eval_records):
    config, artifact = just_eval_run
    tokenizer = load_tokenizer("aligned", config.aligned)
    bos = tokenizer.bos_token_id
    adds_bos = bool(tokenizer("a").input_ids[0] == bos)
    for e, i in enumerate(PICKED):
        instruction = just_eval_records[i]["pure_input"]
        expected = {
            "aligned": tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}], add_generation_prompt=True, tokenize=False
            ),
            "base": BASE_TEMPLATE.replace("{instruction}", instruction),
        }
        for side in ("aligned", "base"):
            ids = artifact.context_ids(side, e).tolist()
            assert artifact.context_text(side, e) == expected[side]
            text = tokenizer.decode(ids)
            if adds_bos:
                assert ids.count(bos) == 1 and ids[0] == bos, side  # exactly one BOS, first
                text = text.removeprefix(tokenizer.bos_token)
            else:
                assert bos not in ids
            assert text == expected[side].removeprefix(tokenizer.bos_token or "")


def test_alpaca_eval_and_jsonl_shapes(tmp_path):
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "Hi", "output": "Hello!  "}, {"instruction": "Yo", "output": "x"}]))
    examples = load_examples(alpaca)
    assert [(e.id, e.instruction, e.response) for e in examples] == [("0", "Hi", "Hello!  "), ("1", "Yo", "x")]
    jsonl = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "a"}, {"instruction": "b", "id": 7, "response": " r\n"}])
    examples = load_examples(jsonl)
    assert [(e.id, e.response) for e in examples] == [("1", None), ("7", " r\n")]
