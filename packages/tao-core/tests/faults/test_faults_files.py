"""Files a run writes: permissions follow the umask, a killed writer's temporaries are removed at
the next start (only ours), and an output set is replaced as a whole, never mixed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tao_core.errors import TaoUserError
from tao_core.io.atomic import _HOST, atomic_write_bytes, remove_stale_temporaries
from tao_core.io.output_set import MANIFEST, recover_outputs, refuse_existing, replace_outputs
from tao_core.results.run_dir import prepare_task_dir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_follows_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "out.bin", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "out.bin") == expected


def test_private_file_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "secret.bin", b"x", private=True)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "secret.bin") == 0o600


def test_only_our_dead_writers_temporaries_are_removed(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".model_epoch_001.pth.tao-{_HOST}-{dead}-0badcafe.tmp"
    live = tmp_path / f".model_epoch_002.pth.tao-{_HOST}-{os.getpid()}-0badcafe.tmp"
    other_host = tmp_path / f".model.pth.tao-otherhost-{dead}-0badcafe.tmp"
    users = tmp_path / ".notes.tmp"
    nested = tmp_path / "labels" / f".a.txt.tao-{_HOST}-{dead}-12345678.tmp"
    nested.parent.mkdir()
    for p in (stale, live, other_host, users, nested):
        p.write_bytes(b"\0" * 1000)
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([str(stale), str(nested)])
    assert live.exists() and other_host.exists() and users.exists()


def test_prepare_task_dir_cleans_a_killed_runs_temporaries(tmp_path):
    task = tmp_path / "results" / "train"
    task.mkdir(parents=True)
    stale = task / f".model_epoch_000_step_00003.pth.tao-{_HOST}-{_dead_pid()}-00000001.tmp"
    stale.write_bytes(b"\0" * 2_000_000)
    assert prepare_task_dir(tmp_path / "results", "train") == str(task)
    assert not stale.exists()


def test_results_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "res").write_text("x")
    with pytest.raises(TaoUserError, match=r"results_dir: .*res is a file, expected a folder"):
        prepare_task_dir(tmp_path / "res", "train")


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_outputs_are_replaced_as_a_whole(tmp_path):
    out = tmp_path / "inference"
    with replace_outputs(out) as staging:
        for name in ("a", "b"):
            (staging / "labels").mkdir(exist_ok=True)
            (staging / "labels" / f"{name}.txt").write_text("old")
        (staging / "per_source_x").mkdir()
        (staging / "per_source_x" / "c.txt").write_text("old")
    (out / "status.json").write_text("{}\n")  # run records are not outputs: kept
    with replace_outputs(out) as staging:
        (staging / "labels").mkdir()
        (staging / "labels" / "a.txt").write_text("new")
    tree = _tree(out)
    assert tree.pop(MANIFEST)
    assert tree == {"labels/a.txt": "new", "status.json": "{}\n"}  # b.txt and per_source_x were the old run's


def test_a_failing_run_keeps_the_previous_outputs(tmp_path):
    out = tmp_path / "inference"
    with replace_outputs(out) as staging:
        (staging / "labels").mkdir()
        (staging / "labels" / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), replace_outputs(out) as staging:
        (staging / "labels").mkdir()
        (staging / "labels" / "z.txt").write_text("half")
        raise RuntimeError("killed by a bug")
    assert (out / "labels" / "a.txt").read_text() == "old" and not (out / "labels" / "z.txt").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".tao-staging")]


def test_a_kill_during_the_swap_is_finished_at_the_next_start(tmp_path):
    """A complete new set left by a killed process rolls forward; an incomplete one is deleted."""
    out = tmp_path / "inference"
    with replace_outputs(out) as staging:
        (staging / "labels").mkdir()
        (staging / "labels" / "old.txt").write_text("old")
    dead = _dead_pid()
    complete = out / f".tao-complete-{_HOST}-{dead}-00000001"
    (complete / "labels").mkdir(parents=True)
    (complete / "labels" / "new.txt").write_text("new")
    (complete / MANIFEST).write_text(json.dumps({"entries": ["labels"]}))
    incomplete = out / f".tao-staging-{_HOST}-{dead}-00000002"
    (incomplete / "labels").mkdir(parents=True)
    recover_outputs(out)
    assert sorted(os.listdir(out)) == [MANIFEST, "labels"]
    assert os.listdir(out / "labels") == ["new.txt"]


def test_named_file_outputs_are_refused(tmp_path):
    engine = tmp_path / "model.engine"
    refuse_existing(engine, "gen_trt_engine.trt_engine")  # nothing there: fine
    engine.write_bytes(b"x")
    with pytest.raises(TaoUserError, match=r"gen_trt_engine.trt_engine: .*model.engine already exists"):
        refuse_existing(engine, "gen_trt_engine.trt_engine")
