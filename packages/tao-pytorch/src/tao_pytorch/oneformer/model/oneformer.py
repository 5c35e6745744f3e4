"""The OneFormer network: backbone -> pixel decoder -> task-conditioned transformer decoder (+ text branch for training).

    from tao_core.specs.oneformer import ExperimentConfig
    from tao_core.text import task_text, tokenize
    model = build_oneformer(cfg)                                  # cfg: ExperimentConfig (model + dataset sections)
    task = torch.from_numpy(tokenize([task_text("panoptic")] * B))   # [B, 77] CLIP BPE ids
    out = model(images, task)                                     # images: [B, 3, H, W] RGB, 0..255
    out["pred_logits"]  [B, Q, C + 1]        class logits (last = "no object")
    out["pred_masks"]   [B, Q, Hp / 4, Wp / 4] mask logits on the padded input (Hp, Wp: H, W rounded up
                                             to model.one_former.size_divisibility); crop before resizing
    out["aux_outputs"]  the same pair for each earlier decoder stage (deep supervision)
    in training also out["contrastive_logits"] [B, Q, hidden] and, with class-text ids [B, T, 77]
    (T = Q - n_ctx texts per image, `model.num_class_texts`), out["texts"] [B, Q, hidden]: the two
    sides of the contrastive loss

As in SHI-Labs/OneFormer, the image is normalised inside the model with dataset.pixel_mean /
pixel_std (0..255 scale), padded right / bottom with zeros to size_divisibility, and the task
token is `task_mlp` (a 2-layer MLP) applied to the 77 token ids of "The task is {task}" as
numbers. Top-level names are the reference's (`backbone`, `sem_seg_head.pixel_decoder`,
`sem_seg_head.predictor`, `task_mlp`, `text_encoder`, `text_projector`, `prompt_ctx`), so
`load_oneformer_weights` reads SHI-Labs checkpoints and TAO's (which add `model.`).
"""

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from tao_pytorch.backbones.swin import build_swin_backbone
from tao_pytorch.common.checkpoint import LoadReport, load_model_weights
from tao_pytorch.detr.deformable_transformer import MLP
from tao_pytorch.oneformer.model.pixel_decoder import MSDeformAttnPixelDecoder
from tao_pytorch.oneformer.model.text_encoder import build_text_branch, encode_text_queries
from tao_pytorch.oneformer.model.transformer_decoder import build_transformer_decoder


class OneFormerHead(nn.Module):
    """`sem_seg_head`: the pixel decoder and the transformer decoder (`predictor`)."""

    def __init__(self, pixel_decoder: nn.Module, predictor: nn.Module):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    def forward(self, features: Dict[str, torch.Tensor], task_token: torch.Tensor) -> dict:
        decoded = self.pixel_decoder(features)
        return self.predictor(decoded.multi_scale_features, decoded.mask_features, task_token)


class OneFormer(nn.Module):
    """See the module docstring; build it with `build_oneformer`."""

    def __init__(
        self,
        backbone: nn.Module,
        sem_seg_head: OneFormerHead,
        task_mlp: nn.Module,
        pixel_mean,
        pixel_std,
        size_divisibility: int,
        task_seq_len: int,
        text_encoder: Optional[nn.Module] = None,
        text_projector: Optional[nn.Module] = None,
        prompt_ctx: Optional[nn.Embedding] = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.task_mlp = task_mlp
        self.text_encoder = text_encoder
        self.text_projector = text_projector
        self.prompt_ctx = prompt_ctx
        self.size_divisibility = size_divisibility
        self.task_seq_len = task_seq_len
        # not saved: they come from the dataset spec (the reference keeps them out of checkpoints too)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def num_queries(self) -> int:
        return self.sem_seg_head.predictor.num_queries

    @property
    def num_class_texts(self) -> int:
        """Class texts per image in training: the contrastive loss pairs the Q queries with these
        texts plus the n_ctx context vectors, so num_object_queries - n_ctx (padded by the data)."""
        n_ctx = 0 if self.prompt_ctx is None else self.prompt_ctx.num_embeddings
        return self.num_queries - n_ctx

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise 0..255 RGB images and pad them right / bottom with zeros to size_divisibility."""
        x = (images - self.pixel_mean) / self.pixel_std
        d = self.size_divisibility
        if d > 1:
            h, w = x.shape[-2:]
            x = F.pad(x, (0, (d - w % d) % d, 0, (d - h % d) % d))
        return x

    def encode_texts(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Text queries of class-text ids [B, T, L] -> [B, T + n_ctx, hidden] (training)."""
        if self.text_encoder is None:
            raise RuntimeError("this OneFormer was built without its text branch (build_oneformer(..., with_text=False))")
        return encode_text_queries(self.text_encoder, self.text_projector, self.prompt_ctx, text_ids)

    def forward(self, images: torch.Tensor, task_ids: torch.Tensor, text_ids: Optional[torch.Tensor] = None) -> dict:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"OneFormer takes RGB images [B, 3, H, W], got {tuple(images.shape)}")
        if task_ids.shape != (images.shape[0], self.task_seq_len):
            raise ValueError(
                f"task ids must be [B, {self.task_seq_len}] (tokenized 'The task is ...'), got {tuple(task_ids.shape)}"
            )
        use_texts = self.training and text_ids is not None
        if use_texts and (text_ids.dim() != 3 or text_ids.shape[1] != self.num_class_texts):
            raise ValueError(
                f"text ids must be [B, {self.num_class_texts}, L] (num_object_queries - n_ctx class texts "
                f"per image), got {tuple(text_ids.shape)}"
            )
        x = self.preprocess(images)
        task_token = self.task_mlp(task_ids.to(x.dtype))
        out = self.sem_seg_head(self.backbone(x), task_token)
        if use_texts:
            out["texts"] = self.encode_texts(text_ids)
        return out


def build_oneformer(cfg, with_text: bool = True) -> OneFormer:
    """OneFormer of an ExperimentConfig (tao_core.specs.oneformer): model.* and dataset.pixel_mean / pixel_std.

    with_text=False leaves out the text branch (only training uses it), as the reference does at
    inference; a checkpoint's text weights are then reported as unused when loading.
    """
    m = cfg.model
    backbone = build_swin_backbone(m.backbone)
    input_shape = {name: (backbone.out_channels[name], backbone.strides[name]) for name in backbone.out_channels}
    pixel_decoder = MSDeformAttnPixelDecoder(input_shape, m.sem_seg_head, m.one_former)
    predictor = build_transformer_decoder(m.one_former, m.sem_seg_head)
    hidden = m.one_former.hidden_dim
    text = (None, None, None)
    if with_text:
        text = build_text_branch(m.text_encoder, hidden, use_checkpoint=cfg.train.activation_checkpoint)
    task_seq_len = m.text_encoder.context_length
    return OneFormer(
        backbone,
        OneFormerHead(pixel_decoder, predictor),
        MLP(task_seq_len, hidden, hidden, 2),
        cfg.dataset.pixel_mean,
        cfg.dataset.pixel_std,
        m.one_former.size_divisibility,
        task_seq_len,
        *text,
    )


def load_oneformer_weights(model: OneFormer, source, key: Optional[str] = None) -> LoadReport:
    """Load a OneFormer checkpoint into `model`: ours, TAO's (`model.` prefix, Lightning `state_dict`) or
    SHI-Labs' (`{"model": ...}`), from a path (optionally encrypted with `key`) or a loaded object.

    Tensors of another shape (the class head of a checkpoint with another num_classes, or query
    embeddings of another num_object_queries) are skipped with a warning listing them and keep
    their initial values; everything else must match by name.
    """
    # the shared loader unwraps the layouts, strips the prefixes and warns about what it skips
    return load_model_weights(model, source, key)
