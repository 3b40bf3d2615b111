"""The training stages end to end on a tiny random Gemma: each writes an adapter that loads.

The chain runs as a user runs it (SFT -> pairs -> DPO, SFT -> GRPO) on a
2-layer Gemma-3 with a tokenizer that has gemma's turn tokens; a few steps each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, build_tokenizer, tiny_gemma3_config

pytest.importorskip("trl", reason="the training scripts need trl (pip install -r requirements-train.txt)")
pytest.importorskip("peft", reason="the training scripts need peft")


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    import torch
    from transformers import Gemma3ForCausalLM

    folder = tmp_path_factory.mktemp("tiny-gemma")
    tokenizer = build_tokenizer(add_bos=True)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    torch.manual_seed(0)
    config = tiny_gemma3_config(len(tokenizer), sliding_window=64)
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train(stage: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compute", "train", stage, *args],  # `tds train STAGE`
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TDS_TRAIN_THREADS": "1"},
    )


def assert_loadable_adapter(base, adapter, stage: str) -> dict:
    """The adapter applies to the base and changes its logits; its log names the stage and a curve."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    ids = torch.tensor([[0, 5, 9, 17, 33]])
    plain = model(ids).logits
    tuned = PeftModel.from_pretrained(model, adapter)(ids).logits
    assert not torch.allclose(plain, tuned), "the adapter changes nothing"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    assert "<start_of_turn>model" in (adapter / "chat_template.jinja").read_text()
    log = json.loads((adapter / "training_log.json").read_text())
    assert log["stage"] == stage and log["steps"] >= 1 and log["versions"]["trl"]
    return log


@pytest.fixture(scope="module")
def sft_adapter(tiny_gemma, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapters") / "sft"
    done = train(
        "sft",
        "--base",
        str(tiny_gemma),
        "--examples",
        "3",
        "--arithmetic",
        "2",
        "--answer-tokens",
        "48",
        "--grad-accum",
        "1",
        "--max-steps",
        "3",
        "--samples",
        "1",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_sft_writes_an_adapter_with_its_loss_curve(tiny_gemma, sft_adapter):
    log = assert_loadable_adapter(tiny_gemma, sft_adapter, "sft")
    assert len(log["loss"]) == 3 and log["rows"] == 5
    assert log["samples"][0]["instruction"]  # a held-out prompt answered after training
    assert sorted(p.name for p in sft_adapter.parent.iterdir()) == ["sft"], "no scratch folder is left behind"


def test_dpo_trains_on_pairs_from_the_base_model(tiny_gemma, sft_adapter, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    made = train("pairs", "--base", str(tiny_gemma), "--pairs", "2", "--answer-tokens", "12", "--out", str(pairs))
    assert made.returncode == 0, made.stderr[-2000:]
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert rows and all(r["id"] >= 200 and r["prompt"].startswith("<start_of_turn>user\n") for r in rows)
    out = tmp_path / "dpo"
    done = train(
        "dpo",
        "--base",
        str(tiny_gemma),
        "--adapter",
        str(sft_adapter),
        "--pairs",
        str(pairs),
        "--grad-accum",
        "1",
        "--max-length",
        "512",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log = assert_loadable_adapter(tiny_gemma, out, "dpo")
    assert log["pairs"] == len(rows) and log["margin"]
    assert not (out / "ref").exists(), "the frozen reference copy is not part of the adapter"


def test_grpo_reports_accuracy_before_and_after(tiny_gemma, sft_adapter, tmp_path):
    out = tmp_path / "grpo"
    done = train(
        "grpo",
        "--base",
        str(tiny_gemma),
        "--adapter",
        str(sft_adapter),
        "--steps",
        "2",
        "--generations",
        "2",
        "--max-completion",
        "4",
        "--eval",
        "4",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log = assert_loadable_adapter(tiny_gemma, out, "grpo")
    assert len(log["reward"]) == 2 and set(log["test_accuracy"]) == {"problems", "before", "after"}


def test_a_missing_adapter_is_one_line_and_exit_2(tiny_gemma, tmp_path):
    done = train("dpo", "--base", str(tiny_gemma), "--adapter", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: --adapter: no adapter_config.json in {tmp_path / 'nowhere'}"
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


# ---------------------------------------------------------------- bad input: one line, exit 2, before training


def small_sft(tiny_gemma, out, *extra: str) -> subprocess.CompletedProcess:
    options = ["--examples", "2", "--arithmetic", "1", "--answer-tokens", "16", "--max-steps", "1", "--samples", "0"]
    return train("sft", "--base", str(tiny_gemma), *options, "--out", str(out), *extra)


def assert_one_line(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert all(needle in lines[0] for needle in needles), lines[0]


def test_an_out_that_is_a_file_is_refused_before_training(tiny_gemma, tmp_path):
    (tmp_path / "taken").write_text("a file")
    assert_one_line(small_sft(tiny_gemma, tmp_path / "taken"), "--out", "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_an_existing_adapter_is_replaced_only_with_overwrite(tiny_gemma, sft_adapter, tmp_path):
    before = {p.name: p.read_bytes() for p in sft_adapter.iterdir()}
    assert_one_line(small_sft(tiny_gemma, sft_adapter), "--out", "exists (use --overwrite to replace it)")
    assert {p.name: p.read_bytes() for p in sft_adapter.iterdir()} == before
    out = tmp_path / "again"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    done = small_sft(tiny_gemma, out, "--overwrite")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    "stage, args, needle",
    [
        ("sft", ["--grad-accum", "0"], "argument --grad-accum: must be at least 1, got 0"),
        ("dpo", ["--max-length", "x"], "argument --max-length: must be a whole number"),
        ("grpo", ["--generations", "0"], "argument --generations: must be at least 1"),
        ("pairs", ["--pairs", "-1"], "argument --pairs: must be at least 1"),
        ("sft", ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    ],
)
def test_a_wrong_option_is_one_line_and_leaves_no_scratch_folder(tiny_gemma, tmp_path, stage, args, needle):
    out = tmp_path / "adapter"
    done = train(stage, "--base", str(tiny_gemma), *args, "--out", str(out))
    assert_one_line(done, f"tds train {stage}: ", needle)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_is_one_line_exit_130_and_removes_the_scratch_folders(tmp_path, capsys):
    from compute.train import common

    def interrupted_training():
        common.scratch_dir(tmp_path / "adapter", "trainer").mkdir()
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        common.run_main(interrupted_training)
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted: the training is lost; nothing was written to --out"
    assert list(tmp_path.iterdir()) == []
