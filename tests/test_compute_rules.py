"""The logit rules and prefill against a slow, obvious decoder, and their runs through `tds check`.

The obvious decoder runs one full forward pass per side per token over the whole prefix (no cache, float64
log-softmax) and applies the rule as its paper states it: logit arithmetic at alpha = 0 is the base side's greedy
answer, at 1 the aligned side's, at 0.5 the argmax of the averaged log-probabilities; prefill with k = 0 is the
base side's answer and with k at least the answer's length the aligned side's.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from conftest import (
    DECODING_INSTRUCTIONS,
    DECODING_MAX_NEW,
    config_text,
    contexts_of,
    decoding_config,
    long_prompt_config,
    prefixes_of,
    write_config,
    write_jsonl,
)

from compute.cli import main
from compute.core import rules
from compute.core.artifact.reader import open_artifact
from compute.core.config import load_config
from compute.core.describe import describe
from compute.core.provenance import check_provenance
from compute.core.rules import ALIGNED, BASE, MIXED, Rule
from compute.core.statistics import SIDE_NAMES
from compute.engine import run as run_module
from compute.engine.decoding import decode_together
from compute.engine.generate import eos_ids
from compute.engine.sides import load_sides


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def sides(request, model_pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"rules-{request.param}")
    dataset = write_jsonl(folder / "d.jsonl", [{"instruction": i} for i in DECODING_INSTRUCTIONS])
    return load_sides(
        load_config(write_config(folder, long_prompt_config(model_pairs[request.param], dataset, folder)))
    )


def obvious_decode(sides, context: dict[str, list[int]], choose) -> list[int]:
    """choose(t, {side: float64 log-probs}) -> the token; one full forward per side per token, no cache."""
    ends = set(eos_ids(sides["aligned"])) | set(eos_ids(sides["base"]))
    ids: list[int] = []
    for t in range(DECODING_MAX_NEW):
        logp = {}
        for name in SIDE_NAMES:
            row = torch.tensor([context[name] + ids])
            logp[name] = torch.log_softmax(sides[name].model.own_logits(row)[0, -1].double(), -1).numpy()
        token = int(choose(t, logp))
        if token in ends:
            break
        ids.append(token)
    return ids


def both(sides, rule: Rule, choose):
    contexts = contexts_of(sides)
    decoded = decode_together(sides, contexts, rule, DECODING_MAX_NEW, prefixes=prefixes_of(sides, contexts))
    obvious = [
        obvious_decode(sides, {n: contexts[n][i] for n in SIDE_NAMES}, choose)
        for i in range(len(DECODING_INSTRUCTIONS))
    ]
    return decoded, obvious


def logit(alpha: float) -> Rule:
    return Rule("logit-arithmetic", {"alpha": alpha, "temperature": 0.0, "top_p": 1.0, "seed": 0})


@pytest.mark.parametrize(
    ("alpha", "choose"),
    [
        (0.0, lambda t, logp: np.argmax(logp["base"])),
        (1.0, lambda t, logp: np.argmax(logp["aligned"])),
        (0.5, lambda t, logp: np.argmax((logp["aligned"] + logp["base"]) / 2)),
    ],
    ids=["alpha-0-is-base", "alpha-1-is-aligned", "alpha-half-is-the-average"],
)
def test_logit_arithmetic_equals_the_obvious_decoder(sides, alpha, choose):
    decoded, obvious = both(sides, logit(alpha), choose)
    assert [d.ids for d in decoded] == obvious
    for d in decoded:
        assert len(d.source) == len(d.ids) == len(d.logprobs)


def test_logit_arithmetic_sources_say_whose_top_1_each_token_is(sides):
    contexts = contexts_of(sides)
    decoded = decode_together(sides, contexts, logit(0.5), DECODING_MAX_NEW)
    for i, answer in enumerate(decoded):
        for t, (token, source) in enumerate(zip(answer.ids, answer.source, strict=True)):
            logp = {
                n: torch.log_softmax(
                    sides[n].model.own_logits(torch.tensor([contexts[n][i] + answer.ids[:t]]))[0, -1], -1
                )
                for n in SIDE_NAMES
            }
            tops = {n: int(logp[n].argmax()) for n in SIDE_NAMES}
            expected = ALIGNED if token == tops["aligned"] else BASE if token == tops["base"] else MIXED
            assert source == expected, (i, t)
            aligned, base, mixture = answer.logprobs[t]
            assert aligned == pytest.approx(float(logp["aligned"][token]), abs=1e-4)
            assert base == pytest.approx(float(logp["base"][token]), abs=1e-4)
            combined = torch.log_softmax((logp["aligned"] + logp["base"]) / 2, -1)
            assert mixture == pytest.approx(float(combined[token]), abs=1e-4)


def test_logit_arithmetic_samples_when_asked_and_a_seed_repeats_it(sides):
    contexts = contexts_of(sides)
    sampled = Rule("logit-arithmetic", {"alpha": 1.5, "temperature": 1.0, "top_p": 0.9, "seed": 3})
    first = decode_together(sides, contexts, sampled, DECODING_MAX_NEW)
    again = decode_together(sides, contexts, sampled, DECODING_MAX_NEW)
    greedy = decode_together(sides, contexts, logit(1.5), DECODING_MAX_NEW)
    assert [d.ids for d in first] == [d.ids for d in again]
    assert [d.ids for d in first] != [d.ids for d in greedy]


@pytest.mark.parametrize("k", [0, 2, DECODING_MAX_NEW])
def test_prefill_equals_the_obvious_decoder(sides, k):
    decoded, obvious = both(
        sides, Rule("prefill", {"tokens": k}), lambda t, logp: np.argmax(logp["aligned" if t < k else "base"])
    )
    assert [d.ids for d in decoded] == obvious
    assert all(d.source == [ALIGNED if t < k else BASE for t in range(len(d.ids))] for d in decoded)


def test_prefill_at_the_extremes_is_one_side_alone(sides):
    """k = 0 gives the base side's own greedy answers, k >= the answer length the aligned side's."""
    contexts = contexts_of(sides)
    for k, alone in ((0, "base"), (DECODING_MAX_NEW, "aligned")):
        prefilled = decode_together(sides, contexts, Rule("prefill", {"tokens": k}), DECODING_MAX_NEW)
        own = decode_together(sides, contexts, Rule(alone), DECODING_MAX_NEW)
        assert [d.ids for d in prefilled] == [d.ids for d in own]


# ----------------------------------------------------------------- runs and check

REFERENCES = ["1", "2", "3", "4"]


@pytest.fixture(scope="module", params=["logit-arithmetic", "prefill"])
def decoded_run(request, model_pairs, tmp_path_factory):
    """A run of each new rule, judged by the arithmetic task (a run without a task is checked below)."""
    folder = tmp_path_factory.mktemp(request.param)
    table = {"logit-arithmetic": "alpha = 0.5", "prefill": "tokens = 2"}[request.param]
    records = [
        {"id": str(i), "instruction": s, "reference": r}
        for i, (s, r) in enumerate(zip(DECODING_INSTRUCTIONS, REFERENCES, strict=True))
    ]
    dataset = write_jsonl(folder / "d.jsonl", records)
    text = config_text(
        model_pairs["llama"], dataset, folder / "out", task="arithmetic", max_new_tokens=DECODING_MAX_NEW, batch_size=2
    )
    config = write_config(folder, text + f'[decoding]\nrule = "{request.param}"\n{table}\n')
    return open_artifact(run_module.run(load_config(config)))


def test_a_run_stores_its_rule_and_passes_check(decoded_run, capsys):
    attrs = decoded_run.attrs
    spec = rules.RULES[attrs["decoding"]]
    assert set(spec.stored()) <= set(attrs) and attrs["task"] == "arithmetic"
    source = decoded_run.read("positions/source")
    assert attrs["decoding_share"] == pytest.approx(
        np.mean(source == Rule(spec.name, rules.params_of(attrs)).counted_side)
    )
    logprobs = decoded_run.read("positions/decoding_logprobs")
    assert logprobs.shape == (decoded_run.n_positions, 3)
    for code, side in ((ALIGNED, "aligned"), (BASE, "base")):
        assert np.allclose(logprobs[:, code], decoded_run.read(f"sides/{side}/logprob"), atol=1e-4)
    assert check_provenance(decoded_run) == []
    assert main(["check", str(decoded_run.path), "--samples", "2"]) == 0
    assert spec.describe(rules.params_of(attrs)) in describe(decoded_run.path)


def _tampered(run, tmp_path, dataset, change):
    path = tmp_path / "tampered.h5"
    path.write_bytes(run.path.read_bytes())
    with h5py.File(path, "r+") as f:
        values = f[dataset][()]
        change(values)
        f[dataset][...] = values
    return open_artifact(path)


def test_check_finds_a_stored_log_probability_that_is_not_the_sides(decoded_run, tmp_path):
    def shift(values):
        values[1, BASE] -= 0.5

    mismatches = check_provenance(_tampered(decoded_run, tmp_path, "positions/decoding_logprobs", shift))
    assert len(mismatches) == 1 and "log P_base(o_t)" in str(mismatches[0]), mismatches


def test_check_finds_a_source_that_breaks_the_rule(decoded_run, tmp_path):
    def relabel(values):
        if decoded_run.attrs["decoding"] == "prefill":
            values[0] = 1 - values[0]
        else:
            values[0] = ALIGNED if values[0] == MIXED else MIXED

    mismatches = check_provenance(_tampered(decoded_run, tmp_path, "positions/source", relabel))
    assert mismatches and mismatches[0].example == 0 and mismatches[0].t == 0, mismatches


def test_check_finds_a_token_the_mixture_would_not_choose(model_pairs, tmp_path):
    """A run decoded at alpha 0.5 whose attribute claims alpha 0: its tokens are not the base side's argmax."""
    config = decoding_config(tmp_path, model_pairs["llama"], '[decoding]\nrule = "logit-arithmetic"\nalpha = 2.0\n')
    run = open_artifact(run_module.run(load_config(config)))  # no task
    assert "task" not in run.attrs and check_provenance(run) == []
    path = tmp_path / "claims.h5"
    path.write_bytes(run.path.read_bytes())
    with h5py.File(path, "r+") as f:
        f.attrs["decoding_alpha"] = 0.0
    assert any("scores higher under the mixture" in str(m) for m in check_provenance(open_artifact(path)))


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('rule = "logit-arithmetic"', "[decoding] rule 'logit-arithmetic' needs alpha"),
        ('rule = "logit-arithmetic"\nalpha = -0.5', "[decoding] alpha must be at least 0.0"),
        ('rule = "logit-arithmetic"\nalpha = "one"', "[decoding] alpha must be a number"),
        ('rule = "logit-arithmetic"\nalpha = 1\ntop_p = 0', "[decoding] top_p must be above 0.0"),
        ('rule = "prefill"', "[decoding] rule 'prefill' needs tokens"),
        ('rule = "prefill"\ntokens = -1', "[decoding] tokens must be at least 0"),
        ('rule = "prefill"\ntokens = 1.5', "[decoding] tokens must be an integer"),
        ('rule = "prefill"\ntokens = 2\nalpha = 1', "[decoding] alpha does not apply to rule 'prefill'"),
        ('rule = "prefill"\ntokens = 2\nalfa = 1', "unknown key 'alfa' in [decoding]"),
    ],
)
def test_a_bad_table_of_a_new_rule_is_one_config_line(capsys, tmp_path, model_pairs, table, needle):
    config = decoding_config(tmp_path, model_pairs["llama"], f"[decoding]\n{table}\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "run.toml" in err, err
