import pytest

from pfs_core.errors import UsageError
from pfs_core.models.registry import DEFAULT_MODEL, MODEL_NAMES, MODELS_BY_NAME, get_spec, resolve_models

EXPECTED = {"lab_rf", "pet_cnn", "ct_cnn", "pet_ct", "lab_pet", "lab_pet_ct", "lab_pet_ct_pretrained", "classic"}


def test_registry_has_all_eight_models():
    assert set(MODEL_NAMES) == EXPECTED
    assert DEFAULT_MODEL in MODEL_NAMES


@pytest.mark.parametrize(("name", "inputs"), [
    ("lab_rf", ("lab",)), ("pet_cnn", ("pet",)), ("ct_cnn", ("ct",)), ("pet_ct", ("pet", "ct")),
    ("lab_pet", ("lab", "pet")), ("lab_pet_ct", ("lab", "pet", "ct")),
    ("lab_pet_ct_pretrained", ("lab", "pet", "ct")), ("classic", ("lab", "pet")),
])
def test_inputs_of_each_model(name, inputs):
    assert MODELS_BY_NAME[name].modalities == inputs


def test_only_the_pretrained_model_pretrains():
    assert [n for n, s in MODELS_BY_NAME.items() if s.pretrained_ct] == ["lab_pet_ct_pretrained"]


def test_resolve_models():
    assert [s.name for s in resolve_models("all")] == list(MODEL_NAMES)
    assert [s.name for s in resolve_models("lab_rf, classic")] == ["lab_rf", "classic"]
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        resolve_models("nope")
    with pytest.raises(UsageError, match="unknown model ''; choose one of: lab_rf"):
        get_spec("")


def test_cli_choices_come_from_registry():
    from pfs_core.cli import build_parser

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    model_action = next(a for a in train._actions if a.dest == "model")
    assert tuple(model_action.choices) == MODEL_NAMES
