"""The `oneformer` command (and `tao model oneformer`): tasks of OneFormer, each run as `fn(cfg, ctx)`.

    oneformer train     -e spec.yaml [-r RESULTS_DIR] [-k KEY] [key=value ...]
    oneformer evaluate  -e spec.yaml evaluate.checkpoint=model.pth
    oneformer inference -e spec.yaml inference.checkpoint=model.pth [inference.mode=semantic|instance|panoptic]
    oneformer export    -e spec.yaml export.checkpoint=model.pth export.onnx_file=model.onnx
"""

from tao_core.cli.network import YamlNetworkCli

CLI = YamlNetworkCli(
    "oneformer",
    {
        "train": "tao_pytorch.oneformer.tasks.train:run",
        "evaluate": "tao_pytorch.oneformer.tasks.evaluate:run",
        "inference": "tao_pytorch.oneformer.tasks.inference:run",
        "export": "tao_pytorch.oneformer.tasks.export:run",
    },
    description="OneFormer: train, evaluate, run and export one model for semantic, instance and panoptic "
    "segmentation (TAO-compatible specs and checkpoints).",
)
main = CLI.main
