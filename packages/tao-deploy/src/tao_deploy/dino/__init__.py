"""DINO on TensorRT / ONNX Runtime engines: `tao deploy dino <task>` (see tao_deploy.detr)."""
