"""The `dino` command (and `tao model dino`): tasks of DINO, each run as `fn(cfg, ctx)`.

    dino convert   -e convert.yaml
    dino train     -e spec.yaml [-r RESULTS_DIR] [-k KEY] [key=value ...]
    dino evaluate  -e spec.yaml evaluate.checkpoint=model.pth
    dino inference -e spec.yaml inference.checkpoint=model.pth
    dino export    -e spec.yaml export.checkpoint=model.pth export.onnx_file=model.onnx
"""

from tao_core.cli.network import YamlNetworkCli

CLI = YamlNetworkCli(
    "dino",
    {
        "convert": "tao_pytorch.dino.tasks.convert:run",
        "train": "tao_pytorch.dino.tasks.train:run",
        "evaluate": "tao_pytorch.dino.tasks.evaluate:run",
        "inference": "tao_pytorch.dino.tasks.inference:run",
        "export": "tao_pytorch.dino.tasks.export:run",
    },
    description="DINO: train, evaluate, run and export (TAO-compatible specs and checkpoints).",
)
main = CLI.main
