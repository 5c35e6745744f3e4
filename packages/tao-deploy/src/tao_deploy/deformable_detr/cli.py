"""`tao deploy deformable_detr`: Deformable DETR engine tasks, each run as `fn(cfg, ctx)` on the deformable_detr spec.

    tao deploy deformable_detr gen_trt_engine -e spec.yaml [-k KEY] gen_trt_engine.onnx_file=m.onnx gen_trt_engine.trt_engine=m.engine
    tao deploy deformable_detr evaluate       -e spec.yaml evaluate.trt_engine=m.engine
    tao deploy deformable_detr inference      -e spec.yaml inference.trt_engine=m.engine
"""

from tao_core.cli.network import YamlNetworkCli

CLI = YamlNetworkCli(
    "deformable_detr",
    {
        "gen_trt_engine": "tao_deploy.detr.gen_trt_engine:run",
        "evaluate": "tao_deploy.detr.evaluate:run",
        "inference": "tao_deploy.detr.inference:run",
    },
    description="Deformable DETR: build FP32 / FP16 / INT8 engines from the exported ONNX and evaluate / run them.",
)
main = CLI.main
