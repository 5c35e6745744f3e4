"""OneFormer spec (seed 004): the experiment schema, its tasks and the loader entry `SPEC`.

    from tao_core.specs.oneformer import SPEC
    cfg = SPEC.load("train", "spec.yaml", overrides=["train.num_epochs=5"])

The sections live in oneformer_model.py, oneformer_dataset.py and oneformer_tasks.py; the
cross-field rules (num_gpus vs gpu_ids, task inputs, dataset formats, model shapes) in
oneformer_rules.py.
"""

import os
from dataclasses import dataclass
from typing import Optional

from tao_core.spec.fields import spec_field
from tao_core.spec.yaml_spec import YamlSpec
from tao_core.specs.common import GenTrtEngineConfig
from tao_core.specs.oneformer_dataset import DatasetConfig
from tao_core.specs.oneformer_model import ModelConfig
from tao_core.specs.oneformer_rules import check_rules
from tao_core.specs.oneformer_tasks import EvaluateConfig, ExportConfig, InferenceConfig, TrainConfig

# Checkpoint names of seed 004 ("Checkpointing and Resuming Training").
LATEST_CHECKPOINT = "oneformer_model_latest.pth"


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


def epoch_checkpoint_name(epoch: int) -> str:
    """`model_epoch_<epoch_num>.pth`, saved every train.checkpoint_interval epochs."""
    return f"model_epoch_{epoch:03d}.pth"


def resume_checkpoint(train, exists=os.path.isfile) -> Optional[str]:
    """The checkpoint training resumes from, or None for a fresh start.

    Seed 004: training resumes from oneformer_model_latest.pth when it exists in
    train.results_dir; train.resume_training_checkpoint_path supersedes it when provided.
    """
    if train.resume_training_checkpoint_path:
        return train.resume_training_checkpoint_path
    latest = os.path.join(train.results_dir, LATEST_CHECKPOINT)
    return latest if exists(latest) else None
