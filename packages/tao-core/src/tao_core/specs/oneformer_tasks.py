"""OneFormer task sections: train (+ optim), evaluate, inference, export (seed 004 tables).

Per-task results directories default to `<results_dir>/<task>` (the seed's Default column reads
/results/train, /results/evaluate ... for the global default /results). They are OmegaConf
interpolations, so they follow a user's global `results_dir` and still read as the seed's value
when nothing is set.
"""

from dataclasses import dataclass
from typing import List, Optional

from tao_core.spec.fields import spec_field
from tao_core.specs.oneformer_model import MODES

# The seed supports fp32 and fp16; its own sample spec writes `precision: 32` (the PyTorch
# Lightning spelling), so the Lightning numbers are accepted as the same two settings.
PRECISIONS = ["fp32", "fp16", "32", "16"]
OPTIMIZERS = ["AdamW", "SGD"]
LR_SCHEDULERS = ["MultiStep", "StepLR"]
MONITORS = ["val_loss", "train_loss"]
# "full": clip the L2 norm of all gradients together (the seed's default); "norm": per parameter
# group; "value": clamp each gradient element to [-clip_grad_norm, clip_grad_norm].
CLIP_GRAD_TYPES = ["full", "norm", "value"]
STRATEGIES = ["ddp", "ddp_sharded"]


@dataclass
class OptimConfig:
    type: str = spec_field("AdamW", "Type of optimizer to use during training.", options=OPTIMIZERS)
    lr: float = spec_field(2e-4, "Initial learning rate for training the model, excluding the backbone.", gt=0)
    momentum: float = spec_field(0.9, "Momentum (SGD), beta1 (AdamW).", gt=0)
    weight_decay: float = spec_field(1e-4, "Weight decay coefficient.", gt=0)
    lr_scheduler: str = spec_field("MultiStep", "Learning rate scheduler.", options=LR_SCHEDULERS)
    gamma: float = spec_field(0.1, "Decreasing factor for the learning rate scheduler.", gt=0)
    milestones: List[int] = spec_field(
        [11], "Epochs at which the MultiStep scheduler multiplies the learning rate by gamma.", item_gt=0
    )
    monitor_name: str = spec_field("val_loss", "Monitor value for the scheduler and best checkpoint.", options=MONITORS)


@dataclass
class TrainConfig:
    num_gpus: int = spec_field(1, "Number of GPUs to use for distributed training.", gt=0)
    gpu_ids: List[int] = spec_field([0], "Indices of GPUs to use for distributed training.", item_ge=0)
    num_nodes: int = spec_field(1, "Number of nodes. If greater than 1, multi-node is enabled.", gt=0)
    seed: int = spec_field(1234, "Random seed for random, NumPy, and torch.", gt=0)
    num_epochs: int = spec_field(10, "Total number of epochs to run the experiment.", gt=0)
    iters_per_epoch: Optional[int] = spec_field(None, "Iterations per epoch; null: one pass over the training set.", gt=0)
    checkpoint_interval: int = spec_field(1, "Epoch interval at which checkpoints are saved.", gt=0)
    validation_interval: int = spec_field(1, "Epoch interval at which validation is run.", gt=0)
    resume_training_checkpoint_path: Optional[str] = spec_field(
        None, "Intermediate checkpoint to resume from; supersedes oneformer_model_latest.pth in results_dir."
    )
    results_dir: Optional[str] = spec_field("${results_dir}/train", "Directory to save training results.")
    optim: OptimConfig = spec_field(OptimConfig, "Optimizer, learning rate schedule and weight decay.")
    clip_grad_type: str = spec_field("full", "Type of gradient clip method.", options=CLIP_GRAD_TYPES)
    clip_grad_norm: float = spec_field(0.1, "Gradient clipping threshold; 0.0 disables clipping.", ge=0)
    precision: str = spec_field("fp32", "Training precision; fp16 enables mixed precision.", options=PRECISIONS)
    distributed_strategy: str = spec_field("ddp", "Multi-GPU training strategy.", options=STRATEGIES)
    activation_checkpoint: bool = spec_field(True, "Recompute activations in the backward pass to save GPU memory.")
    pretrained_model_path: Optional[str] = spec_field(None, "Pretrained model checkpoint to load for finetuning.")
    # The seed's sample spec spells the two pretrained paths differently from its tables.
    pretrained_model: Optional[str] = spec_field(None, "Same as pretrained_model_path (the sample spec's spelling).")
    pretrained_backbone: Optional[str] = spec_field(
        None, "Same as model.backbone.pretrained_weights (the sample spec's spelling)."
    )
    freeze: List[str] = spec_field([], "Layer names (prefixes) in the model to freeze, e.g. ['backbone'].")
    verbose: bool = spec_field(False, "Print detailed learning rate scaling from the optimizer.")


@dataclass
class EvaluateConfig:
    checkpoint: Optional[str] = spec_field(None, "Path to the PyTorch model to evaluate.")
    trt_engine: Optional[str] = spec_field(None, "Path to the TensorRT engine to evaluate (tao deploy only).")
    num_gpus: int = spec_field(1, "Number of GPUs to use.", gt=0)
    gpu_ids: List[int] = spec_field([0], "GPU IDs to use.", item_ge=0)
    results_dir: Optional[str] = spec_field("${results_dir}/evaluate", "Path of the evaluation results directory.")


@dataclass
class InferenceConfig:
    checkpoint: Optional[str] = spec_field(None, "Path to the PyTorch model to run inference with.")
    trt_engine: Optional[str] = spec_field(None, "Path to the TensorRT engine to run inference with (tao deploy only).")
    num_gpus: int = spec_field(1, "Number of GPUs to use.", gt=0)
    gpu_ids: List[int] = spec_field([0], "GPU IDs to use.", item_ge=0)
    results_dir: Optional[str] = spec_field("${results_dir}/inference", "Path of the inference results directory.")
    images_dir: Optional[str] = spec_field(None, "Directory of the images to segment; null: dataset.test.images.")
    mode: Optional[str] = spec_field(None, "Postprocessing mode of the results; null: model.mode.", options=MODES)
    image_size: List[int] = spec_field([1024, 1024], "Network input size [H, W].", item_gt=0, length=2)


@dataclass
class ExportConfig:
    results_dir: Optional[str] = spec_field("${results_dir}/export", "Where export writes its outputs.")
    gpu_id: int = spec_field(0, "GPU index used for export.", ge=0)
    checkpoint: Optional[str] = spec_field(None, "Path to the PyTorch model to export.")
    onnx_file: Optional[str] = spec_field(None, "Path of the .onnx file to write.")
    on_cpu: bool = spec_field(True, "Export on the CPU.")
    opset_version: int = spec_field(12, "Opset version of the exported ONNX.", gt=0)
    input_channel: int = spec_field(3, "Input channel size. The only supported value is 3.", options=[3])
    input_width: int = spec_field(960, "Input width.", gt=0)
    input_height: int = spec_field(544, "Input height.", gt=0)
    batch_size: int = spec_field(-1, "Batch size of the ONNX model; -1 exports a dynamic batch size.", ge=-1)
    verbose: bool = spec_field(False, "Verbose export log.")
