"""`tao deploy oneformer`: OneFormer engine tasks, each run as `fn(cfg, ctx)` on the oneformer spec.

    tao deploy oneformer gen_trt_engine -e spec.yaml gen_trt_engine.onnx_file=m.onnx gen_trt_engine.trt_engine=m.engine
    tao deploy oneformer evaluate       -e spec.yaml evaluate.trt_engine=m.engine
    tao deploy oneformer inference      -e spec.yaml inference.trt_engine=m.engine
"""

from tao_core.cli.network import YamlNetworkCli

CLI = YamlNetworkCli(
    "oneformer",
    {
        "gen_trt_engine": "tao_deploy.oneformer.gen_trt_engine:run",
        "evaluate": "tao_deploy.oneformer.evaluate:run",
        "inference": "tao_deploy.oneformer.inference:run",
    },
    description="OneFormer: build FP32 / FP16 / INT8 engines from the exported ONNX and evaluate / run them.",
)
main = CLI.main
