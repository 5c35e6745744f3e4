"""status.json lines, the task log file and the task_run bracket."""

import json
import logging
import re
from datetime import datetime, timedelta

import pytest

from tao_core.errors import SpecError, SpecErrors, TaoUserError
from tao_core.results import Status, StatusLogger, Verbosity, format_eta, setup_task_logging, task_run

REQUIRED = ("date", "time", "status", "verbosity")


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_record_layout_matches_tao(tmp_path):
    fixed = datetime(2025, 7, 4, 9, 5, 3)
    log = StatusLogger(tmp_path, "train", enabled=True, now=lambda: fixed)
    log.write(
        Status.RUNNING,
        "Training loop in progress",
        epoch=3,
        max_epoch=50,
        eta=3730,
        kpi={"train_loss": 4.25, "val_mAP": float("nan")},
        graphical={"loss": 4.25},
        step=120,
    )
    (rec,) = lines(tmp_path / "train" / "status.json")
    assert list(rec) == [
        "date",
        "time",
        "status",
        "verbosity",
        "message",
        "epoch",
        "max_epoch",
        "eta",
        "graphical",
        "kpi",
        "step",
    ]
    assert rec["date"] == "7/4/2025" and rec["time"] == "9:5:3"  # TAO: no zero padding
    assert rec["status"] == "RUNNING" and rec["verbosity"] == "INFO"
    assert rec["eta"] == "1:02:10"
    assert rec["kpi"] == {"train_loss": 4.25, "val_mAP": "nan"}


def test_eta_forms():
    assert format_eta("0:00:05") == "0:00:05"
    assert format_eta(timedelta(minutes=2)) == "0:02:00"
    assert format_eta(90061.4) == "1 day, 1:01:01"
    assert format_eta(None) is None


def test_unknown_status_rejected(tmp_path):
    with pytest.raises(ValueError):
        StatusLogger(tmp_path, "train", enabled=True).write("DONE")


def test_extra_field_cannot_replace_required_one(tmp_path):
    with pytest.raises(ValueError, match="given twice"):
        StatusLogger(tmp_path, "train", enabled=True).write(Status.RUNNING, "x", date="yesterday")


def test_enum_order_is_taos():
    assert [s.value for s in Status] == ["SUCCESS", "FAILURE", "STARTED", "RUNNING", "SKIPPED"]
    assert Verbosity("WARNING") is Verbosity.WARNING


def test_non_zero_rank_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    rec = StatusLogger(tmp_path, "train").write(Status.RUNNING, "x")
    assert rec["message"] == "x" and not (tmp_path / "train" / "status.json").exists()


def test_task_run_success_order(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with task_run(tmp_path, "train", network="DINO") as status:
        status.write(Status.RUNNING, "epoch 0", epoch=0, max_epoch=1, kpi={"train_loss": 1.0})
    recs = lines(tmp_path / "train" / "status.json")
    assert [r["status"] for r in recs] == ["STARTED", "RUNNING", "SUCCESS"]
    assert recs[0]["message"] == "Starting DINO train."
    assert recs[-1]["message"] == "DINO train finished successfully."
    for rec in recs:
        assert all(k in rec for k in REQUIRED)
        assert re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", rec["date"])
        assert re.fullmatch(r"\d{1,2}:\d{1,2}:\d{1,2}", rec["time"])


def test_task_run_user_error_is_one_line_failure(tmp_path):
    with pytest.raises(TaoUserError):
        with task_run(tmp_path, "evaluate", enabled=True):
            raise TaoUserError("dataset.val_data_sources: folder /data/val does not exist")
    recs = lines(tmp_path / "evaluate" / "status.json")
    assert [r["status"] for r in recs] == ["STARTED", "FAILURE"]
    assert recs[-1]["message"] == "dataset.val_data_sources: folder /data/val does not exist"
    assert recs[-1]["verbosity"] == "ERROR"


def test_task_run_multi_line_user_error_collapsed(tmp_path):
    errors = SpecErrors([SpecError("a.b", 1, "a string"), SpecError("c", -1, ">= 0")])
    with pytest.raises(SpecErrors):
        with task_run(tmp_path, "train", enabled=True):
            raise errors
    msg = lines(tmp_path / "train" / "status.json")[-1]["message"]
    assert "\n" not in msg and "a.b: got 1" in msg and "c: got -1" in msg


def test_task_run_other_exception_named(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with task_run(tmp_path, "train", enabled=True):
            _ = 1 / 0
    last = lines(tmp_path / "train" / "status.json")[-1]
    assert last["status"] == "FAILURE" and last["message"] == "ZeroDivisionError: division by zero"


def test_task_run_appends_across_runs(tmp_path):
    for _ in range(2):
        with task_run(tmp_path, "export", enabled=True):
            pass
    statuses = [r["status"] for r in lines(tmp_path / "export" / "status.json")]
    assert statuses == ["STARTED", "SUCCESS", "STARTED", "SUCCESS"]


def test_read_skips_torn_last_line(tmp_path):
    log = StatusLogger(tmp_path, "train", enabled=True)
    log.write(Status.STARTED, "go")
    with open(log.path, "a") as f:
        f.write('{"date": "1/1/2025", "ti')  # what a kill mid-write could leave
    assert [r["status"] for r in log.read()] == ["STARTED"]


@pytest.fixture
def clean_root_logger():
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_task_log_file_written_and_idempotent(tmp_path, clean_root_logger, capsys):
    log = setup_task_logging(tmp_path, "train", verbose=False)
    log = setup_task_logging(tmp_path, "train", verbose=False)  # second call: no duplicate lines
    log.info("hello %s", "world")
    log.debug("hidden unless verbose")
    logging.getLogger("tao_core.some.module").warning("from a library module")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = (tmp_path / "train" / "train.log").read_text()
    assert text.count("hello world") == 1
    assert "hidden unless verbose" not in text
    assert "[WARNING] tao_core.some.module: from a library module" in text
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[INFO\] tao.train: hello world$", text, re.M)
    assert capsys.readouterr().err.count("hello world") == 1


def test_task_log_verbose_keeps_debug(tmp_path, clean_root_logger):
    log = setup_task_logging(tmp_path, "evaluate", verbose=True)
    log.debug("debug detail")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "debug detail" in (tmp_path / "evaluate" / "evaluate.log").read_text()


@pytest.mark.parametrize("var", ["RANK", "LOCAL_RANK", "NODE_RANK", "OMPI_COMM_WORLD_RANK"])
def test_only_rank_zero_writes_status_and_log(tmp_path, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    StatusLogger(tmp_path, "train").write("RUNNING", "from rank 1")
    setup_task_logging(tmp_path, "train")
    assert not (tmp_path / "train" / "status.json").exists()
    assert not (tmp_path / "train" / "train.log").exists()
