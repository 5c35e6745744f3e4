"""`tao deploy detectnet_v2 <task>` and TAO Deploy's flags (argparse, as TAO's DetectNet_v2 keeps them).

    detectnet_v2 gen_trt_engine -m model.etlt -k KEY [-e SPEC] --data_type int8 --cal_data_file cal.tensorfile
                                --cal_cache_file cal.bin --engine_file model.engine [--batch_size 8 --batches 10]
    detectnet_v2 evaluate  -e SPEC -m model.engine -i IMAGES -l LABELS [-b 8] [-r DIR]
    detectnet_v2 inference -e INFER_SPEC -m model.engine -i IMAGES -r DIR [-b 1]
"""

from tao_core.cli.network import ArgparseNetworkCli

TASKS = {
    "gen_trt_engine": "tao_deploy.detectnet_v2.tasks:gen_trt_engine",
    "evaluate": "tao_deploy.detectnet_v2.tasks:evaluate",
    "inference": "tao_deploy.detectnet_v2.tasks:inference",
}

CLI = ArgparseNetworkCli("detectnet_v2", TASKS, "DetectNet_v2 engines (TensorRT / ONNX Runtime)")
main = CLI.main
