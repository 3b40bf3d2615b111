"""More sides and the pairs to compare (`[sides.NAME]`, `compare`): a four-side stage chain is one run that forwards
each side once per batch and writes one pair artifact per compared pair, equal to the pairs run one by one; what
such a config cannot mean is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import BASE_TEMPLATE, EXAMPLES, counting_forwards, save_lora, write_config, write_jsonl

from compute.core.artifact.reader import open_artifact
from compute.core.config import ConfigError, load_config
from compute.engine.run import run_pairs

# a stage chain: base -> sft -> dpo -> final (the aligned side), and the whole way base -> final
CHAIN = [("sft", "base"), ("dpo", "sft"), ("aligned", "dpo"), ("aligned", "base")]
ANSWERED = [e for e in EXAMPLES if e.get("response") is not None]  # one answer set for every pair


def side_lines(table: str, model: Path, adapter: Path | None = None) -> list[str]:
    lines = [f"[{table}]", f'model = "{model}"', f"template = {json.dumps(BASE_TEMPLATE)}"]
    return lines + ([f'adapter = "{adapter}"'] if adapter else [])


@pytest.fixture(scope="module")
def chain(model_pairs, tmp_path_factory):
    """The tiny llama's base, base + two LoRAs (the middle stages) and its aligned model, over given answers."""
    folder = tmp_path_factory.mktemp("compare")
    base = model_pairs["llama"]["base"]
    models = {
        "aligned": (model_pairs["llama"]["aligned"], None),
        "base": (base, None),
        "sft": (base, save_lora(base, folder / "sft", 1, ["q_proj", "v_proj"])),
        "dpo": (base, save_lora(base, folder / "dpo", 2, ["up_proj", "down_proj"])),
    }
    dataset = write_jsonl(folder / "answers.jsonl", ANSWERED)
    head = [f'dataset = "{dataset}"', f'out_dir = "{folder / "out"}"', "batch_size = 2"]
    lines = ['name = "chain"', *head, f"compare = {json.dumps([list(pair) for pair in CHAIN])}"]
    for name, (model, adapter) in models.items():
        lines += side_lines(name if name in ("aligned", "base") else f"sides.{name}", model, adapter)
    with counting_forwards() as calls:
        paths = run_pairs(load_config(write_config(folder, "\n".join(lines) + "\n")))
    return folder, head, models, paths, calls


def test_each_side_is_forwarded_once_per_batch_and_each_pair_written(chain):
    _, _, _, paths, calls = chain
    assert sorted(paths) == sorted(f"chain-{a}-vs-{b}" for a, b in CHAIN)
    batches = -(-len(ANSWERED) // 2)
    assert len(calls) == 4 * batches  # four sides, not eight (two per pair)


def test_the_compared_pairs_equal_the_pairs_run_one_by_one(chain):
    folder, head, models, paths, _ = chain
    for aligned, base in CHAIN:
        lines = [f'name = "one-{aligned}-{base}"', *head, *side_lines("aligned", *models[aligned])]
        lines += side_lines("base", *models[base])
        config = write_config(folder, "\n".join(lines) + "\n", f"{aligned}-{base}.toml")
        separate = open_artifact(next(iter(run_pairs(load_config(config)).values())))
        together = open_artifact(paths[f"chain-{aligned}-vs-{base}"])
        assert together.side_attrs == separate.side_attrs
        assert np.array_equal(together.read("positions/token_id"), separate.read("positions/token_id"))
        compared = 0
        for dataset, _stat, _side in separate.statistics():
            a, b = together.read(dataset), separate.read(dataset)
            if a.dtype.kind == "f":
                assert np.allclose(a, b, atol=1e-5, equal_nan=True), (aligned, base, dataset)
            else:
                assert np.array_equal(a, b), (aligned, base, dataset)
            compared += 1
        assert compared > 5
        kl = together.read("positions/kl")
        assert kl.max() > 1e-3, (aligned, base)  # the pair's sides differ


@pytest.mark.parametrize(
    "extra, message",
    [
        ("", "[sides] need compare"),
        ('compare = [["sft", "nobody"]]', "compare: no side 'nobody'"),
        ('compare = [["sft", "sft"]]', "compares a side with itself"),
        ('compare = [["sft", "base"], ["sft", "base"]]', "a pair is listed twice"),
        ('compare = [["sft", "base", "aligned"]]', "each pair is [aligned-role side, base-role side]"),
        ('compare = [["aligned", "base"]]', "[sides.sft] is in no compare pair"),
        ('compare = [["sft", "base"]]\n[branching]\nsamples = 4', "compare does not combine with [branching]"),
        ('compare = [["sft", "base"]]\n[sides.base]\nmodel = "m"\ntemplate = "chat"', "not one of aligned, base"),
    ],
)
def test_what_a_compare_config_cannot_mean_is_one_line(model_pairs, tmp_path, extra, message):
    pair = model_pairs["llama"]
    dataset = write_jsonl(tmp_path / "answers.jsonl", EXAMPLES)
    lines = ['name = "c"', f'dataset = "{dataset}"', *extra.split("\n")[:1]]
    lines += side_lines("aligned", pair["aligned"]) + side_lines("base", pair["base"])
    lines += side_lines("sides.sft", pair["base"]) + extra.split("\n")[1:]
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, "\n".join(lines) + "\n"))
    assert message in str(err.value) and "\n" not in str(err.value)
