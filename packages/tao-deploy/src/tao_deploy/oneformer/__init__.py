"""OneFormer engines: gen_trt_engine, evaluate, inference (numpy post-processing from tao-core)."""
