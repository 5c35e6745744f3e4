"""Framework-free pre/post-processing shared by the PyTorch tasks and the deploy engine.

One implementation per network family, so that `tao model dino evaluate` (PyTorch) and
`tao deploy dino evaluate` (TensorRT) resize, normalise and decode exactly alike. Import the
submodules directly (`tao_core.processing.detr`).
"""
