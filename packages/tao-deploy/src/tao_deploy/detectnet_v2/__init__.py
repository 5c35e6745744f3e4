"""DetectNet_v2 on engines: `tao deploy detectnet_v2 gen_trt_engine | evaluate | inference`.

    engine      build_detectnet_engine (FP32 / FP16 / INT8: tensorfile, image folder, QAT scales),
                EnginePredictor (NCHW images -> output_cov, output_bbox)
    cli         TAO Deploy's argparse flags of the three tasks

Decode, clustering, AP and the spec readers are tao-core's (tao_core.processing.detectnet,
tao_core.metrics.detectnet, tao_core.tasks.detectnet_v2): the numbers match the Keras tasks of
tao-tf for the same raw outputs. No TensorFlow here.
"""
