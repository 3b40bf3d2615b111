"""The artifact is right: every stored number equals naive one-position-at-a-time re-scoring."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES, config_text, write_config, write_jsonl

from compute.core.artifact.reader import open_artifact
from compute.core.artifact.summary import summarize
from compute.core.config import load_config
from compute.engine import score
from compute.engine.run import run
from compute.engine.verify import load_side_models, verify


@pytest.fixture(scope="module", params=["llama", "gpt2", "gemma2"])
def scored(request, model_pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"ref-{request.param}")
    dataset = write_jsonl(folder / "data.jsonl", EXAMPLES)
    text = config_text(model_pairs[request.param], dataset, folder / "out", top_k=5, batch_size=2, max_new_tokens=16)
    config = load_config(write_config(folder, text))
    patch = pytest.MonkeyPatch()
    patch.setattr(score, "CHUNK_ELEMENTS", 7 * 400)  # a few rows per chunk, so chunk edges are crossed
    try:
        path = run(config)
    finally:
        patch.undo()
    return open_artifact(path)


def test_every_position_matches_naive_rescoring(scored):
    positions = [
        (e, t) for e in range(scored.n_examples) for t in range(int(np.diff(scored.read("examples/offsets"))[e]))
    ]
    assert len(positions) > 60
    mismatches = verify(scored, positions, atol=2e-4)
    assert mismatches == [], "\n".join(map(str, mismatches[:10]))


def test_the_pair_agrees_on_some_generated_tokens_and_not_on_others(scored):
    """The perturbed aligned side makes a test that can tell categories apart."""
    if scored.side_attrs["aligned"]["model"].endswith("gemma2-aligned"):
        pytest.skip("the tiny random Gemma 2 repeats one token, so both sides agree on all of it")
    e = list(scored.read("examples/id")).index("generated")
    base_rank = scored.read("sides/base/rank", scored.example_rows(e))
    assert (base_rank == 0).any() and (base_rank > 0).any()
    assert summarize(scored)["mean_kl"] > 0


def test_generated_answer_is_the_aligned_sides_greedy_answer(scored):
    e = list(scored.read("examples/id")).index("generated")
    rows = scored.example_rows(e)
    assert rows.stop - rows.start == 16  # max_new_tokens, no EOS from random weights
    assert (scored.read("sides/aligned/rank", rows) == 0).all()
    top1 = scored.read("sides/aligned/topk_ids", rows)[:, 0]
    assert (top1 == scored.read("positions/token_id", rows)).all()


def test_generated_answers_are_what_generate_gives_one_at_a_time(scored):
    """Batched, left-padded generation gives the same ids as generating that example alone."""
    import torch

    e = list(scored.read("examples/id")).index("generated")
    model = load_side_models(scored)["aligned"].weights.lm
    context = torch.tensor(scored.context_ids("aligned", e), dtype=torch.long)[None]
    alone = model.generate(context, do_sample=False, max_new_tokens=16, pad_token_id=2)[0, context.shape[1] :]
    stored = scored.read("positions/token_id", scored.example_rows(e))
    assert alone.tolist()[: len(stored)] == stored.tolist()


def test_check_command_passes_a_good_artifact_and_catches_a_tampered_one(scored, tmp_path, capsys):
    import shutil

    import h5py

    from compute.cli import main

    assert main(["check", str(scored.path), "--samples", "6"]) == 0
    assert "ok: 6 positions re-scored naively, 0 mismatches" in capsys.readouterr().out
    tampered = tmp_path / "tampered.h5"
    shutil.copy(scored.path, tampered)
    with h5py.File(tampered, "a") as f:
        f["sides/base/entropy"][...] = f["sides/base/entropy"][...] + 0.01
    assert main(["check", str(tampered), "--samples", "6"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "sides/base/entropy" in out


def test_a_v1_file_without_the_optional_additions_passes_info_and_check(scored, tmp_path, capsys):
    """Written from the format table alone (no examples/index, context text or JS): info and check take it."""
    from dashboard_helpers import strip_additions

    from compute.cli import main

    plain = strip_additions(scored.path, tmp_path / "plain.h5")
    assert not open_artifact(plain).has("positions/js")
    assert main(["info", str(plain)]) == 0
    out = capsys.readouterr().out
    assert "aligned top choice (AlignTDS)" in out and "JS" not in out
    assert main(["check", str(plain), "--samples", "6"]) == 0
    assert "ok: 6 positions re-scored naively, 0 mismatches" in capsys.readouterr().out


def test_js_is_stored_and_a_tampered_js_is_caught(scored, tmp_path, capsys):
    import shutil

    import h5py

    from compute.cli import main

    js = scored.read("positions/js")
    assert (js >= 0).all() and (js <= np.log(2) + 1e-6).all() and js.max() > 0
    tampered = shutil.copy(scored.path, tmp_path / "tampered.h5")
    with h5py.File(tampered, "a") as f:
        f["positions/js"][...] = f["positions/js"][...] * 1.5 + 0.01
    assert main(["check", str(tampered), "--samples", "4"]) == 1
    assert "positions/js" in capsys.readouterr().out
