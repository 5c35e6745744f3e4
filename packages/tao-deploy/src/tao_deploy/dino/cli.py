"""`tao deploy dino`: DINO engine tasks, each run as `fn(cfg, ctx)` on the dino spec.

    tao deploy dino gen_trt_engine -e spec.yaml [-k KEY] gen_trt_engine.onnx_file=m.onnx gen_trt_engine.trt_engine=m.engine
    tao deploy dino evaluate       -e spec.yaml evaluate.trt_engine=m.engine
    tao deploy dino inference      -e spec.yaml inference.trt_engine=m.engine
"""

from tao_core.cli.network import YamlNetworkCli

CLI = YamlNetworkCli(
    "dino",
    {
        "gen_trt_engine": "tao_deploy.detr.gen_trt_engine:run",
        "evaluate": "tao_deploy.detr.evaluate:run",
        "inference": "tao_deploy.detr.inference:run",
    },
    description="DINO: build FP32 / FP16 / INT8 engines from the exported ONNX and evaluate / run them.",
)
main = CLI.main
