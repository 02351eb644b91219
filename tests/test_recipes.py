"""``recipes/*.toml``: every setting says where it comes from (issue 24 item 4), the ablation
recipes train what :data:`training.ablate.ROWS` says their row trains and carry its paper number,
and the CIFAR10-DVS rows differ exactly where the paper says (TET's loss and augmentation only in
the 83.70* row)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from training.ablate import ROWS
from training.config import TrainConfig

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.toml"))
#: how a source may begin: the seed paper, the authors' related code, the references it builds on, or us
SOURCES = ("paper:", "ASGL/MPD-AGL code", "ASGL code", "TET code", "tdBN code", "ours:")


def _doc(path: Path) -> dict:
    return tomllib.loads(path.read_text())


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_setting_of_a_recipe_states_its_source(path):
    doc = _doc(path)
    TrainConfig.from_toml(path)  # loads and checks
    assert set(doc["source"]) == set(doc["train"]), path.name
    for key, source in doc["source"].items():
        assert source.startswith(SOURCES) and len(source) > 20, (path.name, key, source)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_weight_decay_on_the_decay_parameters_is_a_stated_choice(path):
    doc = _doc(path)
    assert doc["train"]["weight_decay_b"] is False
    assert "beta toward 0.5" in doc["source"]["weight_decay_b"]


def test_the_ablation_recipes_train_their_rows_and_carry_the_papers_numbers():
    """Table 2's rows have a FIXED decay; each number is the one ROWS holds for that row and table."""
    seen = set()
    for path in RECIPES:
        doc = _doc(path)
        table = doc.get("paper", {}).get("table")
        if table not in ("1", "2"):
            continue
        config = TrainConfig.from_toml(path)
        row = next(r for r in ROWS.values() if r.beta_init == config.beta_init and r.mode == config.mode
                   and (r.mode == "lsg" or r.alpha == config.alpha))
        assert (config.dataset, config.arch, config.timesteps) == ("cifar10", "resnet19", 2)
        assert table == "1" or config.mode == "fixed", path.name
        assert doc["paper"].get("accuracy") == dict(row.paper).get(table), path.name
        seen.add((table, row.name))
    assert seen == {("1", "fixed-a1"), ("1", "decay-a1"), ("1", "lsg"), *(("2", f"fixed-a{a:g}") for a in
                                                                           (0.5, 1, 2.5, 5, 10))}


def test_the_dvs_rows_differ_only_in_tets_loss_and_augmentation():
    path = RECIPES[0].parent
    plain, tet = (_doc(path / f"table3-cifar10dvs-vggsnn-t10{s}.toml") for s in ("", "-tet"))
    assert (plain["paper"]["accuracy"], tet["paper"]["accuracy"], tet["paper"]["starred"]) == (77.90, 83.70, True)
    assert (plain["train"]["augment"], plain["train"]["loss"]) == (False, "ce")
    assert (tet["train"]["augment"], tet["train"]["loss"], tet["train"]["tet_lambda"]) == (True, "tet", 1e-3)
    differ = {k for k in {**plain["train"], **tet["train"]} if plain["train"].get(k) != tet["train"].get(k)}
    assert differ == {"augment", "loss", "tet_lambda"}
    assert plain["train"]["dvs_slice_ms"] == tet["train"]["dvs_slice_ms"] == 5.0
