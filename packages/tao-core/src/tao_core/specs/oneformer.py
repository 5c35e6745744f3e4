"""OneFormer spec (seed 004): the experiment schema, its tasks and the loader entry `SPEC`.

    from tao_core.specs.oneformer import SPEC
    cfg = SPEC.load("train", "spec.yaml", overrides=["train.num_epochs=5"])

The sections live in oneformer_model.py, oneformer_dataset.py and oneformer_tasks.py; the
cross-field rules (num_gpus vs gpu_ids, task inputs, dataset formats, model shapes) in
oneformer_rules.py.
"""

from dataclasses import dataclass
from typing import Optional

from tao_core.spec.fields import spec_field
from tao_core.spec.yaml_spec import YamlSpec
from tao_core.specs.common import GenTrtEngineConfig
from tao_core.specs.oneformer_dataset import DatasetConfig
from tao_core.specs.oneformer_model import ModelConfig
from tao_core.specs.oneformer_rules import check_rules
from tao_core.specs.oneformer_tasks import EvaluateConfig, ExportConfig, InferenceConfig, TrainConfig


@dataclass
class ExperimentConfig:
    results_dir: str = spec_field("/results", "Directory where experiment results are saved.")
    encryption_key: Optional[str] = spec_field(None, "Encryption key to encrypt and decrypt model files.")
    model: ModelConfig = spec_field(ModelConfig, "Configuration of the model architecture.")
    dataset: DatasetConfig = spec_field(DatasetConfig, "Configuration of the dataset.")
    train: TrainConfig = spec_field(TrainConfig, "Configuration of the training task.")
    evaluate: EvaluateConfig = spec_field(EvaluateConfig, "Configuration of the evaluation task.")
    inference: InferenceConfig = spec_field(InferenceConfig, "Configuration of the inference task.")
    export: ExportConfig = spec_field(ExportConfig, "Configuration of the ONNX export task.")
    gen_trt_engine: GenTrtEngineConfig = spec_field(GenTrtEngineConfig, "TensorRT engine generation (tao deploy).")


TASKS = ("train", "evaluate", "inference", "export", "gen_trt_engine")
SPEC = YamlSpec("oneformer", {task: ExperimentConfig for task in TASKS}, rules=check_rules)

# Checkpoints and resume (seed 004, "Checkpointing and Resuming Training": oneformer_model_latest.pth,
# superseded by train.resume_training_checkpoint_path) follow the rule every network shares:
# tao_core.results.checkpoints, with the prefix "oneformer".
