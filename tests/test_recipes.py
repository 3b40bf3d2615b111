"""Every shipped recipe passes `compute validate` (config and dataset; no model is loaded)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from conftest import ROOT

from compute.cli import main
from compute.core.config import PACKAGE_PREFIX, load_config

RECIPES = sorted((ROOT / "compute" / "recipes").glob("*.toml"))


def _packages(path: Path) -> list[str]:
    text = path.read_text()
    return [line.split('"')[1].removeprefix(PACKAGE_PREFIX) for line in text.splitlines() if PACKAGE_PREFIX in line]


def test_the_recipes_are_there():
    names = {p.stem for p in RECIPES}
    assert {"gemma-270m-urial-vs-zeroshot", "gemma-270m-urial-generated", "smollm2-135m-chat-vs-plain"} <= names
    assert len(names) >= 11


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(recipe, capsys):
    for package in _packages(recipe):
        try:
            importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"model package {package} is not installed")
    assert main(["validate", str(recipe)]) == 0, capsys.readouterr().err
    config = load_config(recipe)
    assert config.out_dir == ROOT / "artifacts" or config.out_dir.resolve() == (ROOT / "artifacts").resolve()
