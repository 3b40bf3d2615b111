"""Mixed decoding: both sides step together and a rule picks whose token is emitted (nudging, cross-sampling).

The batched decoder (KV caches, left padding, shared-prefix caches) must give exactly what a naive decoder
gives: one example at a time, one full forward pass per side per token, no cache. The tiny random models are
unsure everywhere, so nudging uses a small gamma to get a mix of both sides.
"""

from __future__ import annotations

import dataclasses

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
    save_lora,
    write_config,
    write_jsonl,
)

from compute.cli import main
from compute.core.artifact.reader import open_artifact
from compute.core.config import load_config
from compute.core.describe import describe
from compute.core.partial import PartialWork
from compute.core.provenance import check_provenance
from compute.core.rules import ALIGNED, BASE, SIDE_OF, Rule, Step, cross_sampling, nudging
from compute.core.rules.cross_sampling import js_threshold
from compute.core.statistics import SIDE_NAMES, _naive_js
from compute.engine import run as run_module
from compute.engine.decoding import decode_together
from compute.engine.generate import eos_ids, generate_answers
from compute.engine.model import load_plain
from compute.engine.sides import load_sides

GAMMA = 0.05


@pytest.fixture(scope="module", params=["llama", "gpt2", "gemma2"])
def sides(request, model_pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"decode-{request.param}")
    dataset = write_jsonl(folder / "d.jsonl", [{"instruction": i} for i in DECODING_INSTRUCTIONS])
    return load_sides(
        load_config(write_config(folder, long_prompt_config(model_pairs[request.param], dataset, folder)))
    )


def naive_decode(sides, context: dict[str, list[int]], rule: Rule) -> tuple[list[int], list[int]]:
    """One example, one full forward per side per token, the rule applied to float64 numbers."""
    ends = set(eos_ids(sides["aligned"])) | set(eos_ids(sides["base"]))
    ids: list[int] = []
    source: list[int] = []
    for _ in range(DECODING_MAX_NEW):
        logp = {}
        for name in SIDE_NAMES:
            row = torch.tensor([context[name] + ids])
            logp[name] = torch.log_softmax(sides[name].model.own_logits(row)[0, -1].double(), -1).numpy()
        tops = {name: int(np.argmax(logp[name])) for name in SIDE_NAMES}
        step = Step(
            t=len(ids),
            previous=source[-1] if source else None,
            base_top_prob=float(np.exp(logp["base"].max())),
            tops_agree=tops["aligned"] == tops["base"],
            js=_naive_js(logp),
        )
        chosen = rule.source(step)
        token = tops["aligned" if chosen == ALIGNED else "base"]
        if token in ends:
            break
        ids.append(token)
        source.append(chosen)
    return ids, source


RULES = {
    "nudging": Rule("nudging", {"threshold": GAMMA}),
    "cross-sampling": Rule("cross-sampling", {"insert": "aligned", "budget": 0.5}),  # js_threshold: the median
}


def median_js(sides, contexts) -> float:
    alone = decode_together(sides, contexts, Rule("base"), DECODING_MAX_NEW, with_js=True)
    return js_threshold([d.js for d in alone], 0.5)


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_the_batched_decode_equals_a_naive_decode(sides, rule):
    contexts = contexts_of(sides)
    if rule.needs_js:
        rule = rule.with_params(js_threshold=median_js(sides, contexts))
    decoded = decode_together(sides, contexts, rule, DECODING_MAX_NEW, prefixes=prefixes_of(sides, contexts))
    naive = [
        naive_decode(sides, {n: contexts[n][i] for n in SIDE_NAMES}, rule) for i in range(len(DECODING_INSTRUCTIONS))
    ]
    assert [(d.ids, d.source) for d in decoded] == naive
    if rule.counted_side is not None:  # the rule really mixed the two sides
        assert {s for d in decoded for s in d.source} == {ALIGNED, BASE}


def test_two_adapters_on_one_loaded_base_decode_as_two_plain_models(model_pairs, tmp_path):
    """Both sides share one copy of the base weights and switch adapters per forward pass; the answers must be
    those of each side's own plainly loaded model (adapter merged)."""
    base = model_pairs["llama"]["base"]
    adapters = {
        name: save_lora(base, tmp_path / name, seed, ["q_proj", "v_proj"]) for name, seed in (("a", 1), ("b", 2))
    }
    dataset = write_jsonl(tmp_path / "d.jsonl", [{"instruction": i} for i in DECODING_INSTRUCTIONS])
    text = long_prompt_config({"aligned": base, "base": base}, dataset, tmp_path).replace(
        "[base]\n", f'adapter = "{adapters["a"]}"\n[base]\n'
    )
    shared = load_sides(load_config(write_config(tmp_path, text + f'adapter = "{adapters["b"]}"\n')))
    assert shared["aligned"].model.weights is shared["base"].model.weights
    plain = {name: dataclasses.replace(side, model=load_plain(name, side.config)) for name, side in shared.items()}
    contexts = contexts_of(shared)
    rule = RULES["nudging"]
    decoded = decode_together(shared, contexts, rule, DECODING_MAX_NEW, prefixes=prefixes_of(shared, contexts))
    naive = [
        naive_decode(plain, {n: contexts[n][i] for n in SIDE_NAMES}, rule) for i in range(len(DECODING_INSTRUCTIONS))
    ]
    assert [(d.ids, d.source) for d in decoded] == naive
    assert {s for d in decoded for s in d.source} == {ALIGNED, BASE}


def test_batch_composition_does_not_change_the_answers(sides):
    contexts = contexts_of(sides)
    rule = RULES["nudging"]
    together = decode_together(sides, contexts, rule, DECODING_MAX_NEW, prefixes=prefixes_of(sides, contexts))
    for order in ([3, 1], [2], [0, 3, 2, 1]):
        part = {n: [contexts[n][i] for i in order] for n in SIDE_NAMES}
        alone = decode_together(sides, part, rule, DECODING_MAX_NEW)
        assert [(d.ids, d.source) for d in alone] == [(together[i].ids, together[i].source) for i in order]


def test_one_side_alone_equals_transformers_generate(sides):
    contexts = contexts_of(sides)
    for name in SIDE_NAMES:
        ours = decode_together(sides, contexts, Rule(name), DECODING_MAX_NEW)
        theirs = generate_answers(sides[name], contexts[name], DECODING_MAX_NEW, ())
        assert [d.ids for d in ours] == theirs


def test_stop_strings_end_an_answer_whichever_side_emitted_them(sides):
    contexts = contexts_of(sides)
    rule = RULES["nudging"]
    full = decode_together(sides, contexts, rule, DECODING_MAX_NEW)
    tokenizer = sides["aligned"].tokenizer
    stop = tokenizer.decode(full[0].ids[3:5])  # text the answer reaches after a few tokens
    cut = decode_together(sides, contexts, rule, DECODING_MAX_NEW, stop=(stop,))
    assert stop not in tokenizer.decode(cut[0].ids)
    assert cut[0].ids == full[0].ids[: len(cut[0].ids)] and len(cut[0].source) == len(cut[0].ids)
    assert len(cut[0].ids) <= 5


def test_the_nudging_rule_token_by_token():
    """(previous source, base top-1 prob >= gamma, the two top-1 agree) -> source, as the paper's code decides."""
    table = {
        (None, True, True): ALIGNED,  # every answer opens with a nudge
        (None, False, False): ALIGNED,
        (BASE, True, False): BASE,  # a confident base writes on
        (BASE, True, True): BASE,
        (BASE, False, True): ALIGNED,  # an unsure base is nudged, even where it would agree
        (BASE, False, False): ALIGNED,
        (ALIGNED, False, False): ALIGNED,  # the nudge goes on
        (ALIGNED, True, False): BASE,  # ... until the base is confident again
        (ALIGNED, False, True): BASE,  # ... or its top-1 is the nudging token
        (ALIGNED, True, True): BASE,
    }
    for (previous, confident, agree), expected in table.items():
        step = Step(t=0, previous=previous, base_top_prob=0.6 if confident else 0.2, tops_agree=agree, js=0.0)
        assert nudging.source({"threshold": 0.4}, step) == expected, (previous, confident, agree)


def test_the_cross_sampling_rule():
    def step(js: float) -> Step:
        return Step(t=1, previous=None, base_top_prob=0.5, tops_agree=False, js=js)

    for insert, code in (("aligned", ALIGNED), ("base", BASE)):
        params = {"insert": insert, "js_threshold": 0.5}
        assert [cross_sampling.source(params, step(js)) for js in (0.9, 0.1)] == [code, 1 - code]
    rule = Rule("cross-sampling", {"insert": "base", "budget": 0.1, "js_threshold": 0.2})
    assert [rule.source(step(js)) for js in (0.19, 0.2, 0.3)] == [ALIGNED, BASE, BASE]


def test_js_threshold_is_the_quantile_for_the_budget():
    js = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]]
    threshold = js_threshold(js, 0.2)
    assert np.mean(np.concatenate(js) >= threshold) == pytest.approx(0.2)
    assert js_threshold([[], []], 0.1) == float("inf")


# ----------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def nudged(model_pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nudged")
    config = decoding_config(folder, model_pairs["llama"], f'[decoding]\nrule = "nudging"\nthreshold = {GAMMA}\n')
    return open_artifact(run_module.run(load_config(config)))


def test_a_nudged_run_stores_provenance_that_follows_its_rule(nudged):
    attrs = nudged.attrs
    assert attrs["decoding"] == "nudging" and attrs["decoding_threshold"] == GAMMA
    source = nudged.read("positions/source")
    assert source.dtype == np.int8 and set(source.tolist()) == {ALIGNED, BASE}
    assert attrs["decoding_share"] == pytest.approx(np.mean(source == ALIGNED))
    assert check_provenance(nudged) == []
    assert "nudging (gamma 0.05)" in describe(nudged.path)


def test_check_finds_a_token_that_broke_the_rule(nudged, tmp_path, capsys):
    tampered = tmp_path / "tampered.h5"
    tampered.write_bytes(nudged.path.read_bytes())
    with h5py.File(tampered, "r+") as f:
        source = f["positions/source"][()]
        source[3] = 1 - source[3]
        f["positions/source"][...] = source
    mismatches = check_provenance(open_artifact(tampered))
    assert mismatches and all(m.field == "positions/source (nudging)" for m in mismatches[:-1])
    assert str(mismatches[-1]).startswith("attribute decoding_share is")  # the share no longer adds up either
    assert main(["check", str(tampered), "--samples", "2"]) == 1
    assert f"mismatch: example 0, t 3: positions/source (nudging): emitted by {SIDE_OF[source[3]]}, but" in (
        capsys.readouterr().out
    )
    assert main(["check", str(nudged.path), "--samples", "2"]) == 0


def test_cross_sampling_calibrates_on_the_receiving_side_alone(model_pairs, tmp_path):
    pair = model_pairs["llama"]
    budget = 0.25
    table = f'[decoding]\nrule = "cross-sampling"\ninsert = "aligned"\nbudget = {budget}\n'
    crossed = open_artifact(run_module.run(load_config(decoding_config(tmp_path, pair, table, name="cross"))))
    alone = open_artifact(
        run_module.run(load_config(decoding_config(tmp_path, pair, '[decoding]\nrule = "base"\n', name="alone")))
    )
    assert alone.read("positions/source").tolist() == [BASE] * alone.n_positions
    expected = np.quantile(alone.read("positions/js").astype(np.float64), 1 - budget)
    attrs = crossed.attrs
    assert attrs["decoding_js_threshold"] == pytest.approx(expected, abs=1e-5)
    assert (attrs["decoding_insert"], attrs["decoding_budget"]) == ("aligned", budget)
    source = crossed.read("positions/source")
    assert attrs["decoding_share"] == pytest.approx(np.mean(source == ALIGNED)) and 0 < attrs["decoding_share"] < 1
    assert check_provenance(crossed) == [] and check_provenance(alone) == []


def test_a_resumed_run_keeps_sources_and_threshold(model_pairs, tmp_path, monkeypatch):
    table = '[decoding]\nrule = "cross-sampling"\ninsert = "base"\nbudget = 0.3\n'
    whole = open_artifact(
        run_module.run(load_config(decoding_config(tmp_path, model_pairs["gpt2"], table, name="whole")))
    )
    config = load_config(decoding_config(tmp_path, model_pairs["gpt2"], table, name="resumed"))
    real_save = PartialWork.save

    def save_then_stop(self, *args):
        real_save(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(PartialWork, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_module.run(config)
    monkeypatch.setattr(PartialWork, "save", real_save)
    monkeypatch.setattr(cross_sampling, "js_threshold", lambda *a: pytest.fail("calibrated again on resume"))
    resumed = open_artifact(run_module.run(config))
    for name in ("positions/token_id", "positions/source"):
        assert resumed.read(name).tolist() == whole.read(name).tolist()
    for key in ("decoding_js_threshold", "decoding_share"):
        assert resumed.attrs[key] == whole.attrs[key]


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        (
            'rule = "sampling"',
            "[decoding] rule must be one of aligned, base, nudging, cross-sampling, logit-arithmetic, prefill",
        ),
        ('rule = "cross-sampling"\nbudget = 0.1', "[decoding] rule 'cross-sampling' needs insert"),
        ('rule = "cross-sampling"\ninsert = "aligned"', "[decoding] rule 'cross-sampling' needs budget"),
        ('rule = "cross-sampling"\ninsert = "aligned"\nbudget = 0', "[decoding] budget must be above 0.0"),
        ('rule = "cross-sampling"\ninsert = "both"\nbudget = 0.1', "[decoding] insert must be one of aligned, base"),
        ('rule = "nudging"\nbudget = 0.1', "[decoding] budget does not apply to rule 'nudging'"),
        ('rule = "nudging"\nthreshold = 1.5', "[decoding] threshold must be at most 1.0"),
    ],
)
def test_a_bad_decoding_table_is_one_config_line(capsys, tmp_path, model_pairs, table, needle):
    config = decoding_config(tmp_path, model_pairs["llama"], f"[decoding]\n{table}\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "run.toml" in err, err


def test_decoding_over_a_dataset_that_gives_answers_is_refused(capsys, tmp_path, model_pairs):
    dataset = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Hi", "response": "Hello"}])
    text = config_text(model_pairs["llama"], dataset, tmp_path / "out") + '[decoding]\nrule = "base"\n'
    assert main(["run", str(write_config(tmp_path, text))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[decoding]" in err and "a.jsonl gives answers" in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_decoding_table_is_part_of_the_partial_work_fingerprint(tmp_path, model_pairs):
    one = load_config(decoding_config(tmp_path, model_pairs["llama"], '[decoding]\nrule = "nudging"\n'))
    other = load_config(
        decoding_config(tmp_path, model_pairs["llama"], '[decoding]\nrule = "nudging"\nthreshold = 0.3\n')
    )
    assert one.decoding.params["threshold"] == 0.4 and other.decoding.params["threshold"] == 0.3
    assert one.fingerprint(b"") != other.fingerprint(b"")
