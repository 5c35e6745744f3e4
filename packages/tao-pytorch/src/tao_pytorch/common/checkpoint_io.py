"""Lightning's checkpoint I/O and "latest" link, made safe for TAO's results folders.

- `TaoCheckpointIO`: Lightning writes and reads every checkpoint (epoch files, the latest one,
  resume) through `tao_pytorch.common.checkpoint`: atomic write (temporary file, fsync,
  rename), AES-GCM encryption when a key is given, `weights_only=True` loading.
- `TaoModelCheckpoint`: Lightning's ModelCheckpoint with TAO's names
  (`model_epoch_000_step_00012.pth`, `<net>_model_latest.pth`) whose latest link is replaced
  atomically: a kill at any moment leaves the previous latest (or the new one), never none.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import CheckpointIO

from tao_core.io.atomic import temporary_name
from tao_core.results.checkpoints import EPOCH_CHECKPOINT_FORMAT
from tao_pytorch.common.checkpoint import load_checkpoint, save_checkpoint


class TaoCheckpointIO(CheckpointIO):
    """CheckpointIO plugin: `Trainer(plugins=[TaoCheckpointIO(key)])`."""

    def __init__(self, key: str | None = None):
        self.key = key or None

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        save_checkpoint(checkpoint, path, self.key)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        # weights_only is always True here: a checkpoint never gets to run code, whatever Lightning asks.
        return load_checkpoint(path, self.key, map_location="cpu" if map_location is None else map_location)

    def remove_checkpoint(self, path) -> None:
        if os.path.islink(path) or os.path.isfile(path):
            os.remove(path)


class TaoModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint writing `model_epoch_XXX_step_XXXXX.pth` every `every_n_epochs` epochs and
    keeping `<last_name>.pth` pointing at the newest one (a relative symlink; a copy where the
    filesystem has no symlinks). Names never get Lightning's `-v1` suffixes: a resumed run
    overwrites the same latest file."""

    CHECKPOINT_EQUALS_CHAR = "_"
    FILE_EXTENSION = ".pth"

    def __init__(self, dirpath: str, last_name: str, every_n_epochs: int = 1, **kwargs: Any):
        super().__init__(
            dirpath=dirpath,
            filename=EPOCH_CHECKPOINT_FORMAT,
            save_top_k=-1,
            save_last="link",
            every_n_epochs=every_n_epochs,
            enable_version_counter=False,
            **kwargs,
        )
        # An instance attribute, so two networks in one process keep their own names.
        self.CHECKPOINT_NAME_LAST = last_name

    @staticmethod
    def _link_checkpoint(trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
            replace_link(filepath, linkpath)
        trainer.strategy.barrier()


def replace_link(target: str, linkpath: str) -> None:
    """Point `linkpath` at `target` atomically: build the new link beside it, then rename over.

    Lightning's own version removes the old link first, so a kill in between leaves no latest
    checkpoint to resume from.
    """
    folder = os.path.dirname(os.path.abspath(linkpath))
    # named like every atomic write's temporary, so a kill here leaves nothing the next start keeps
    tmp = os.path.join(folder, temporary_name(os.path.basename(linkpath)))
    try:
        os.symlink(os.path.relpath(os.path.abspath(target), folder), tmp)
    except OSError:  # no symlinks here (some network / Windows filesystems): an atomic copy instead
        shutil.copyfile(target, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, linkpath)
