"""Dataset readers shared by every network (numpy / Pillow only, no framework).

Import the submodules directly (`tao_core.data.coco`, `tao_core.data.images`, ...); this package
file stays empty so that importing one reader never pulls in the others.
"""
