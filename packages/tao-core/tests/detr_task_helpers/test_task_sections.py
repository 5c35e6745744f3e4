"""tao_core.tasks.detr: how the evaluate / inference sections are read (PyTorch and deploy tasks)."""

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from tao_core.errors import SpecError, TaoUserError
from tao_core.tasks.detr import batch_size_of, eval_sources, input_size_of, output_dir

SRC = {"image_dir": "/data/images", "json_file": "/data/a.json"}


@pytest.mark.parametrize("wrap", [dict, OmegaConf.create], ids=["dict", "omegaconf"])
def test_eval_sources_test_first_then_val(wrap):
    assert eval_sources(wrap({"test_data_sources": SRC, "val_data_sources": [SRC]}))[0] == "dataset.test_data_sources"
    field, sources = eval_sources(wrap({"test_data_sources": {"image_dir": "x", "json_file": None},
                                        "val_data_sources": [SRC]}))
    assert field == "dataset.val_data_sources" and list(sources) == [SRC]
    with pytest.raises(TaoUserError, match="dataset.test_data_sources: give"):
        eval_sources(wrap({"test_data_sources": None, "val_data_sources": []}))


def test_output_dir_section_results_dir_else_task_dir(tmp_path):
    ctx = SimpleNamespace(results_dir=str(tmp_path / "results" / "evaluate"))
    assert output_dir(OmegaConf.create({"results_dir": None}), ctx) == ctx.results_dir
    assert (tmp_path / "results" / "evaluate").is_dir()
    own = tmp_path / "own"
    assert output_dir({"results_dir": str(own)}, ctx) == str(own) and own.is_dir()
    assert output_dir(SimpleNamespace(), ctx) == ctx.results_dir


@pytest.mark.parametrize(
    ("section", "expected"),
    [({"batch_size": 2}, 2), ({"batch_size": -1}, 7), ({"batch_size": None}, 7), ({}, 7)],
)
def test_batch_size_of(section, expected):
    cfg = SimpleNamespace(dataset=SimpleNamespace(batch_size=7))
    assert batch_size_of(section, cfg) == expected
    assert batch_size_of(SimpleNamespace(**section), cfg) == expected
    assert batch_size_of(OmegaConf.create(section), cfg) == expected


def test_input_size_of_pair_none_or_spec_error():
    assert input_size_of({"input_height": 640, "input_width": 800}, "evaluate") == (640, 800)
    assert input_size_of(SimpleNamespace(input_height=None, input_width=None), "inference") is None
    with pytest.raises(SpecError, match="inference.input_width"):
        input_size_of({"input_height": 640}, "inference")
    with pytest.raises(SpecError, match="evaluate.input_height"):
        input_size_of(OmegaConf.create({"input_height": None, "input_width": 8}), "evaluate")
