"""The YAML spec engine on a small schema: each check and each failure message."""

import json
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import pytest
from omegaconf import DictConfig
from omegaconf.errors import ReadonlyConfigError

from tao_core.errors import SpecError, SpecErrors, TaoUserError
from tao_core.spec import YamlSpec, save_experiment, spec_field


@dataclass
class Source:
    image_dir: str = spec_field("", "Image folder.", required=True)
    json_file: Optional[str] = spec_field(None, "COCO json.")


@dataclass
class Optim:
    lr: float = spec_field(2e-4, "Learning rate.", gt=0)
    lr_steps: List[int] = spec_field([11], "Decay epochs.", item_gt=0)
    lr_scheduler: str = spec_field("MultiStep", "Schedule.", options=["MultiStep", "StepLR"])
    mean: List[float] = spec_field([0.5, 0.5, 0.5], "Mean.", length=3)


@dataclass
class Train:
    optim: Optim = spec_field(Optim, "Optimizer.")
    num_epochs: int = spec_field(12, "Epochs.", gt=0, le=1000)
    amp: bool = spec_field(False, "Mixed precision.")


@dataclass
class Experiment:
    train: Train = spec_field(Train, "Training.")
    sources: List[Source] = spec_field([], "Data sources.")
    color_map: Dict[str, str] = spec_field({}, "Colours by class.")
    results_dir: Optional[str] = spec_field(None, "Results.")


def rules(cfg, task):
    if task == "train" and not cfg.sources:
        return [SpecError("sources", [], "at least one source for training")]
    return []


SPEC = YamlSpec("toy", {"train": Experiment, "export": Experiment}, rules=rules)
GOOD = "sources:\n  - image_dir: /imgs\n"


def errors_of(excinfo) -> list[str]:
    err = excinfo.value
    return [str(e) for e in (err.errors if isinstance(err, SpecErrors) else [err])]


def test_defaults_merge_and_readonly():
    cfg = SPEC.load("train", text=GOOD + "train:\n  num_epochs: 3\n")
    assert isinstance(cfg, DictConfig)
    assert cfg.train.num_epochs == 3 and cfg.train.optim.lr == pytest.approx(2e-4)
    assert cfg.sources[0].json_file is None
    with pytest.raises(ReadonlyConfigError):
        cfg.train.num_epochs = 4


def test_yaml11_exponent_strings_become_floats():
    cfg = SPEC.load("train", text=GOOD + "train:\n  optim:\n    lr: 2e-5\n")
    assert cfg.train.optim.lr == pytest.approx(2e-5)


def test_duplicate_keys_warn_and_last_wins(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = SPEC.load("train", text=GOOD + "train:\n  num_epochs: 300\n  num_epochs: 900\n")
    assert cfg.train.num_epochs == 900
    assert "'num_epochs' appears twice" in caplog.text


def test_overrides_parse_yaml_values_and_create_sections():
    cfg = SPEC.load("train", text=GOOD, overrides=["train.optim.lr_steps=[3, 5]", "color_map.raccoon=red",
                                                   "train.amp=true", "results_dir=/tmp/x"])
    assert list(cfg.train.optim.lr_steps) == [3, 5] and cfg.color_map.raccoon == "red"
    assert cfg.train.amp is True and cfg.results_dir == "/tmp/x"


def test_spec_file_and_saved_experiment(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD)
    cfg = SPEC.load("train", path)
    saved = save_experiment(cfg, tmp_path / "res", "train")
    assert saved.endswith("res/train/experiment.yaml")
    assert SPEC.load("train", saved) == cfg


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        (GOOD + "trian: {}\n", [], "trian: got {}; expected a known key (did you mean 'train'?)"),
        (GOOD, ["train.optim.lrr=1"], "train.optim.lrr: got 1; expected a known key (did you mean 'lr'?)"),
        (GOOD, ["train.num_epochs=1.5"], "train.num_epochs: got 1.5; expected an integer"),
        (GOOD, ["train.num_epochs=true"], "train.num_epochs: got True; expected an integer"),
        (GOOD, ["train.amp=yes please"], "train.amp: got 'yes please'; expected a boolean"),
        (GOOD, ["train.optim.lr=fast"], "train.optim.lr: got 'fast'; expected a number"),
        (GOOD, ["train.optim.lr=0"], "train.optim.lr: got 0.0; expected a value > 0"),
        (GOOD, ["train.num_epochs=5000"], "train.num_epochs: got 5000; expected a value <= 1000"),
        (GOOD, ["train.optim.lr_scheduler=multistep"], "expected one of ['MultiStep', 'StepLR'] (did you mean 'MultiStep'?)"),
        (GOOD, ["train.optim.lr_steps=[4, -1]"], "train.optim.lr_steps[1]: got -1; expected a value > 0"),
        (GOOD, ["train.optim.lr_steps=4"], "train.optim.lr_steps: got 4; expected a list of an integer"),
        (GOOD, ["train.optim.mean=[0.1]"], "train.optim.mean: got [0.1]; expected a list of exactly 3 elements"),
        (GOOD, ["train=3"], "train: got 3; expected a mapping (section)"),
        (GOOD, ["train.num_epochs=null"], "null is not allowed here"),
        ("sources:\n  - json_file: a.json\n", [], "sources[0].image_dir: got ''; expected a value: this field is required"),
        ("{}", [], "sources: got []; expected at least one source for training"),
        ("- 1\n- 2\n", [], "<root>: got [1, 2]; expected a YAML mapping"),
    ],
)
def test_each_bad_value_is_named(text, overrides, expected):
    with pytest.raises(SpecError if text.startswith("- ") else SpecErrors) as excinfo:
        SPEC.load("train", text=text, overrides=overrides)
    assert any(expected in e for e in errors_of(excinfo)), errors_of(excinfo)


def test_all_problems_reported_at_once():
    with pytest.raises(SpecErrors) as excinfo:
        SPEC.load("train", text=GOOD, overrides=["train.num_epochs=0", "train.optim.lr=-1", "nope=1"])
    assert len(excinfo.value.errors) == 3


def test_errors_name_the_spec_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD + "train:\n  num_epochs: 0\n")
    with pytest.raises(SpecErrors, match=f"{path}: train.num_epochs"):
        SPEC.load("train", path)


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_malformed_override(bad):
    with pytest.raises(TaoUserError, match="expected key=value"):
        SPEC.load("train", text=GOOD, overrides=[bad])


def test_override_into_a_scalar_is_an_error():
    with pytest.raises(SpecError, match="'num_epochs' to be a section"):
        SPEC.load("train", text=GOOD + "train:\n  num_epochs: 3\n", overrides=["train.num_epochs.x=1"])


def test_unknown_task_and_missing_file(tmp_path):
    with pytest.raises(TaoUserError, match="has no task 'trian' \\(did you mean 'train'\\?\\)"):
        SPEC.load("trian", text=GOOD)
    with pytest.raises(TaoUserError, match="spec file not found"):
        SPEC.load("train", tmp_path / "absent.yaml")


def test_template_loads_back_to_the_defaults():
    text = SPEC.template("export")
    assert "lr_scheduler: MultiStep  # Schedule; options: ['MultiStep', 'StepLR']" in text
    assert SPEC.load("export", text=text) == SPEC.defaults("export")


def test_json_schema_carries_rules():
    schema = SPEC.json_schema("train")
    json.dumps(schema)
    optim = schema["properties"]["train"]["properties"]["optim"]["properties"]
    assert optim["lr"] == {"type": "number", "exclusiveMinimum": 0, "description": "Learning rate.", "default": 2e-4}
    assert optim["lr_scheduler"]["enum"] == ["MultiStep", "StepLR"]
    assert optim["mean"]["minItems"] == 3
    assert schema["properties"]["results_dir"]["type"] == ["string", "null"]
    assert schema["properties"]["sources"]["items"]["additionalProperties"] is False
