"""The `deformable_detr` command (and `tao model deformable_detr`): tasks of Deformable DETR, each run as `fn(cfg, ctx)`.

    deformable_detr convert   -e convert.yaml
    deformable_detr train     -e spec.yaml [-r RESULTS_DIR] [-k KEY] [key=value ...]
    deformable_detr evaluate  -e spec.yaml evaluate.checkpoint=model.pth
    deformable_detr inference -e spec.yaml inference.checkpoint=model.pth
    deformable_detr export    -e spec.yaml export.checkpoint=model.pth export.onnx_file=model.onnx
"""

from tao_core.cli.network import YamlNetworkCli

CLI = YamlNetworkCli(
    "deformable_detr",
    {
        "convert": "tao_pytorch.deformable_detr.tasks.convert:run",
        "train": "tao_pytorch.deformable_detr.tasks.train:run",
        "evaluate": "tao_pytorch.deformable_detr.tasks.evaluate:run",
        "inference": "tao_pytorch.deformable_detr.tasks.inference:run",
        "export": "tao_pytorch.deformable_detr.tasks.export:run",
    },
    description="Deformable DETR: train, evaluate, run and export (TAO-compatible specs and checkpoints).",
)
main = CLI.main
