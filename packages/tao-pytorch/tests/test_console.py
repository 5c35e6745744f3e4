"""What training prints: a real Lightning fit of a one-layer model, stdout captured (not a
terminal): no progress bar, one log line per N steps, none of Lightning's device banner, litlogger
tip or LeafSpec warning."""

import io
import logging
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pytorch_lightning")

from tao_pytorch.common.console import StepProgressLog, log_every, progress  # noqa: E402


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_bar_only_on_a_terminal():
    assert progress(40, stream=_Tty()) == {"enable_progress_bar": True, "callbacks": []}
    piped = progress(40, stream=io.StringIO())
    assert piped["enable_progress_bar"] is False
    assert [type(c) for c in piped["callbacks"]] == [StepProgressLog] and piped["callbacks"][0].every_n_steps == 10


@pytest.mark.parametrize("steps,every", [(1, 1), (3, 1), (40, 10), (1000, 50)])
def test_log_every(steps, every):
    assert log_every(steps) == every


FIT = textwrap.dedent('''
    import logging, sys
    import pytorch_lightning as pl
    import torch
    from tao_pytorch.common.console import progress, quiet_dependency_noise

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")

    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)
        def training_step(self, batch, i):
            return self.lin(batch[0]).pow(2).mean()
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=2)
    if sys.argv[1] == "quiet":
        quiet_dependency_noise()
    shown = progress(len(data))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, enable_progress_bar=shown["enable_progress_bar"],
                         callbacks=shown["callbacks"])
    trainer.fit(M(), data)
''')


def _fit(mode):
    return subprocess.run([sys.executable, "-c", FIT, mode], capture_output=True, text=True, timeout=300)


def test_fit_output_is_plain_lines_without_dependency_noise():
    r = _fit("quiet")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    steps = [line for line in out.splitlines() if "tao_pytorch.common.console: epoch" in line]
    # 8 steps per epoch, a line every 2 steps, 2 epochs
    assert len(steps) == 8, out
    assert "epoch 1/2 step 2/8: train_loss" in steps[0] and "s/step" in steps[0]
    assert "epoch 2/2 step 8/8" in steps[-1]
    assert "\r" not in out and "it/s" not in out  # no tqdm bar
    for noise in ("GPU available:", "TPU available:", "litlogger", "LeafSpec"):
        assert noise not in out, noise


def test_the_noise_is_lightnings_without_the_filter():
    # the filter is what removes the banner: without it the same fit prints it
    r = _fit("loud")
    assert r.returncode == 0, r.stderr
    assert "GPU available:" in r.stdout + r.stderr


def test_quiet_is_idempotent():
    from tao_pytorch.common.console import quiet_dependency_noise

    quiet_dependency_noise()
    quiet_dependency_noise()
    assert len([f for f in logging.getLogger("pytorch_lightning.utilities.rank_zero").filters
                if type(f).__name__ == "_DropNoise"]) == 1
