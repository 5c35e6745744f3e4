"""DINO and Deformable DETR on engines (the two share every task; ctx.network names which).

    gen_trt_engine.run   ONNX / .etlt -> FP32 / FP16 / INT8 engine (calibration with the network's preprocessing)
    evaluate.run         COCO mAP of an engine, results.json / detections.json / ground_truth.json
    inference.run        annotated images + KITTI labels of an engine
    detector             EngineDetector: images -> tao-core preprocessing -> engine -> tao-core top-k decode
"""
