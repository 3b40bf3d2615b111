"""The template control without a model: its config checks, and the decomposition on a crafted control whose
numbers are worked out by hand (two examples, so every bootstrap interval runs from one example's value to the
other's: a resample draws one example twice with probability 1/4 each)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import BASE_TEMPLATE, write_config, write_jsonl

from compute.cli import main
from compute.core.artifact.reader import open_artifact
from compute.core.artifact.records import ExampleScores, RunMeta, SideContext
from compute.core.artifact.writer import write_artifact
from compute.core.config import (
    ALIGNED_WEIGHTS_BASE_TEMPLATE,
    BASE_WEIGHTS_ALIGNED_TEMPLATE,
    CONTROL_PAIRS,
    ConfigError,
    load_config,
)
from compute.core.control import (
    INTERACTION,
    LOGPROB,
    MEAN_KL,
    SHIFTED_SHARE,
    control_groups,
    decompose,
    format_controls,
)
from compute.core.report import format_report

K = 3
ANSWERS = [[1, 2], [3]]  # example 0 has two positions, example 1 one
# Per cell and example: the answer tokens' log-probabilities and the cell's ranks of them (as a pair's base side).
LOGPROB_OF = {
    "aligned": ([-1, -1], [-2]),
    "base": ([-3, -3], [-5]),
    BASE_WEIGHTS_ALIGNED_TEMPLATE: ([-2, -2], [-3]),
    ALIGNED_WEIGHTS_BASE_TEMPLATE: ([-2, -2], [-4]),
}
RANK_OF = {
    "aligned": ([0, 0], [0]),
    "base": ([5, 0], [4]),  # shifted: 1 of 2, 1 of 1
    BASE_WEIGHTS_ALIGNED_TEMPLATE: ([0, 0], [3]),  # 0 of 2, 1 of 1
    ALIGNED_WEIGHTS_BASE_TEMPLATE: ([9, 0], [0]),  # 1 of 2, 0 of 1
}
KL_OF = {  # per pair (role)
    "total": ([0.2, 0.4], [0.9]),
    "weights-aligned-template": ([0.1, 0.1], [0.1]),
    "weights-base-template": ([0.3, 0.3], [0.6]),
    "template-aligned-weights": ([0.0, 0.0], [0.3]),
    "template-base-weights": ([0.2, 0.2], [0.2]),
}
WEIGHTS = {"aligned": {"model": "tiny/m", "adapter": "sft"}, "base": {"model": "tiny/m"}}
TEMPLATES = {"aligned": {"template": "turn {instruction}"}, "base": {"template": "plain {instruction}"}}


def cell_attrs(cell: str) -> dict[str, str]:
    weights = "aligned" if cell in ("aligned", ALIGNED_WEIGHTS_BASE_TEMPLATE) else "base"
    template = "aligned" if cell in ("aligned", BASE_WEIGHTS_ALIGNED_TEMPLATE) else "base"
    return {**WEIGHTS[weights], **TEMPLATES[template], "dtype": "float32"}


def side_stats(side: str, cell: str, e: int) -> dict[str, np.ndarray]:
    n = len(ANSWERS[e])
    return {
        f"sides/{side}/topk_ids": np.tile(np.arange(K, dtype=np.int32), (n, 1)),
        f"sides/{side}/topk_logprobs": np.full((n, K), -1.0, dtype=np.float32),
        f"sides/{side}/logprob": np.array(LOGPROB_OF[cell][e], dtype=np.float32),
        f"sides/{side}/rank": np.array(RANK_OF[cell][e], dtype=np.int32),
        f"sides/{side}/entropy": np.ones(n, dtype=np.float32),
    }


def write_control(folder, name="ctl", attrs=None):
    """The five pair artifacts of a crafted control, each from the cells' values above."""
    paths = {}
    for role, (aligned, base) in CONTROL_PAIRS.items():
        examples = [
            ExampleScores(
                index=e,
                id=f"e{e}",
                prompt=f"q{e}",
                response="",
                token_ids=np.array(ANSWERS[e], dtype=np.int32),
                contexts={side: SideContext(np.array([0], dtype=np.int32)) for side in ("aligned", "base")},
                stats={
                    "positions/kl": np.array(KL_OF[role][e], dtype=np.float32),
                    **side_stats("aligned", aligned, e),
                    **side_stats("base", base, e),
                },
            )
            for e in range(len(ANSWERS))
        ]
        side_attrs = attrs or {"aligned": cell_attrs(aligned), "base": cell_attrs(base)}
        meta = RunMeta(
            name=f"{name}-{role}",
            top_k=K,
            side_attrs=side_attrs,
            attrs={"control": "template", "control_name": name, "control_role": role},
        )
        paths[role] = folder / f"{name}-{role}.h5"
        write_artifact(paths[role], meta, examples, {i: str(i) for i in range(K + 1)})
    return paths


def close(estimate, value, low, high):
    return np.allclose([estimate.value, estimate.low, estimate.high], [value, low, high], atol=1e-6)


def test_the_decomposition_of_a_crafted_control(tmp_path):
    paths = write_control(tmp_path)
    d = decompose({role: open_artifact(p) for role, p in paths.items()})
    assert (d.examples, d.positions, d.weights_equal) == (2, 3, False)

    lp = d.measures[LOGPROB]  # the aligned cell's log P(o_t) minus the base cell's
    assert close(lp["total"], 7 / 3, 2, 3)  # differences 2, 2 | 3
    assert close(lp["weights-aligned-template"], 1, 1, 1)
    assert close(lp["weights-base-template"], 1, 1, 1)
    assert close(lp["template-aligned-weights"], 4 / 3, 1, 2)
    assert close(lp["template-base-weights"], 4 / 3, 1, 2)
    assert close(lp[INTERACTION], 0, 0, 0)
    # additive: total = weights (base template) + template (aligned weights) = weights (aligned) + template (base)
    assert np.isclose(lp["total"].value, lp["weights-base-template"].value + lp["template-aligned-weights"].value)
    assert np.isclose(lp["total"].value, lp["weights-aligned-template"].value + lp["template-base-weights"].value)
    for path in ("aligned weights", "base weights"):
        assert close(d.template_share[LOGPROB][path], 4 / 7, 2 / 4, 2 / 3)  # example 0: 2 of 4; example 1: 2 of 3
    assert close(d.cells[LOGPROB]["aligned"], -4 / 3, -2, -1)
    assert close(d.cells[LOGPROB]["base"], -11 / 3, -5, -3)

    # the base cell's shifted share minus the aligned cell's; shifted per example: aligned 0 | 0, base 1 | 1,
    # base weights + aligned template 0 | 1, aligned weights + base template 1 | 0 (of 2 | 1 positions)
    shifted = d.measures[SHIFTED_SHARE]
    assert close(shifted["total"], 2 / 3, 1 / 2, 1)
    assert close(shifted["weights-aligned-template"], 1 / 3, 0, 1)
    assert close(shifted["weights-base-template"], 1 / 3, 0, 1)
    assert close(shifted["template-aligned-weights"], 1 / 3, 0, 1 / 2)
    assert close(shifted["template-base-weights"], 1 / 3, 0, 1 / 2)
    assert close(shifted[INTERACTION], 0, 0, 0)  # paired: 0 - 0 in example 0 and 1 - 1 in example 1
    assert close(d.cells[SHIFTED_SHARE]["base"], 2 / 3, 1 / 2, 1)
    assert close(d.template_share[SHIFTED_SHARE]["aligned weights"], 1 / 2, 0, 1)  # 1 of 1 | 0 of 1

    kl = d.measures[MEAN_KL]
    assert close(kl["total"], 0.5, 0.3, 0.9)
    assert close(kl["weights-aligned-template"], 0.1, 0.1, 0.1)
    assert close(kl["weights-base-template"], 0.4, 0.3, 0.6)
    assert close(kl[INTERACTION], -0.3, -0.5, -0.2)  # paired: -0.2 and -0.5; unpaired it would be wider


def test_report_prints_the_decomposition_and_json_holds_it(tmp_path, capsys):
    paths = write_control(tmp_path)
    text = format_report(list(paths.values()))
    assert "Template control ctl: 2 examples, 3 positions" in text
    assert "| Δ mean log P(o_t) (nats) | 2.3333 [2.0000, 3.0000] | 1.0000 [1.0000, 1.0000] |" in text
    assert "| shifted share (answer token) | 66.67 % [50.00, 100.00] | 33.33 % [0.00, 100.00] |" in text
    assert "| base weights + base template | 66.67 % [50.00, 100.00] | -3.6667 [-5.0000, -3.0000] |" in text
    assert "(mean log P(o_t) (nats)): via aligned weights 57.14 % [50.00, 66.67]" in text
    assert "zero by construction" not in text


def test_report_json_holds_the_decomposition(tmp_path, capsys):
    paths = write_control(tmp_path)
    assert main(["report", "--json", "--resamples", "200", *map(str, paths.values())]) == 0
    (control,) = json.loads(capsys.readouterr().out)["controls"]
    assert (control["control"], control["examples"], control["weights_equal"]) == ("ctl", 2, False)
    total = control["measures"][LOGPROB]["total"]
    assert np.allclose([total["value"], total["low"], total["high"], total["n"]], [7 / 3, 2, 3, 2])
    assert np.isclose(control["template_share"][LOGPROB]["base weights"]["value"], 4 / 7)


def test_equal_weights_are_reported_as_all_template(tmp_path):
    same = {"model": "tiny/m", "dtype": "float32"}
    paths = write_control(
        tmp_path, attrs={"aligned": {**same, "template": "chat"}, "base": {**same, "template": "plain"}}
    )
    assert "the weights' parts are zero by construction" in format_controls([open_artifact(p) for p in paths.values()])


def test_only_complete_controls_are_decomposed(tmp_path):
    paths = write_control(tmp_path)
    some = [open_artifact(p) for role, p in paths.items() if role != "template-base-weights"]
    assert control_groups(some) == {}
    assert format_controls(some) == ""
    assert list(control_groups([open_artifact(p) for p in paths.values()])) == ["ctl"]


# ---------------------------------------------------------------- config


def control_config(tmp_path, extra: str = "", base_template: str = BASE_TEMPLATE, name: str = "ctl") -> str:
    dataset = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "hi"}])
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    return (
        f'name = "{name}"\ndataset = "{dataset}"\ncontrol = "template"\n{extra}\n'
        f'[aligned]\nmodel = "{model}"\ntemplate = "chat"\n'
        f'[base]\nmodel = "{model}"\ntemplate = {json.dumps(base_template)}\n'
    )


def test_a_control_config_names_its_cells_and_pairs(tmp_path):
    config = load_config(write_config(tmp_path, control_config(tmp_path)))
    cells = config.cells()
    assert cells[ALIGNED_WEIGHTS_BASE_TEMPLATE].template == BASE_TEMPLATE
    assert cells[BASE_WEIGHTS_ALIGNED_TEMPLATE].template == "chat"
    assert [p.name for p in config.pairs()] == [f"ctl-{role}" for role in CONTROL_PAIRS]


@pytest.mark.parametrize(
    ("extra", "base_template", "name", "message"),
    [
        ('control = "weights"', BASE_TEMPLATE, "ctl", "control must be one of template, got 'weights'"),
        ("[decoding]\nrule = 'nudging'", BASE_TEMPLATE, "ctl", "does not combine with [decoding]"),
        ("[branching]\nsamples = 8", BASE_TEMPLATE, "ctl", "does not combine with [branching]"),
        ("", "chat", "ctl", "needs the [aligned] and [base] templates (or system prompts) to differ"),
        ("", BASE_TEMPLATE, "n" * 220, "at most 213 with a control"),
    ],
)
def test_control_config_errors_are_one_line(tmp_path, capsys, extra, base_template, name, message):
    text = control_config(tmp_path, extra, base_template, name)
    if extra.startswith("control"):
        text = text.replace('control = "template"\n', "")
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(path)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err


# ---------------------------------------------------------------- dashboard


def test_the_control_page_draws_the_decomposition(tmp_path, monkeypatch):
    from dashboard_helpers import APP
    from streamlit.testing.v1 import AppTest

    write_control(tmp_path)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("app_pages/control.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    row = table[table["measure"] == LOGPROB].iloc[0]
    assert row["total"] == "2.3333 [2.0000, 3.0000]"
    assert row["interaction"] == "0.0000 [0.0000, 0.0000]"
    assert len(at.get("plotly_chart")) == 3


def test_the_control_page_says_when_there_is_no_control(tmp_path, monkeypatch):
    from dashboard_helpers import APP, small_runs
    from streamlit.testing.v1 import AppTest

    small_runs(tmp_path)
    monkeypatch.setenv("TDS_ARTIFACTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("app_pages/control.py").run()
    assert not at.exception
    assert "No complete template control" in at.info[0].value
