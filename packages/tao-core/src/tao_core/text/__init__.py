"""Text processing without a deep-learning framework: CLIP's BPE tokenizer (OneFormer's task and class texts)."""

from tao_core.text.clip_tokenizer import CONTEXT_LENGTH, EOT, SOT, VOCAB_SIZE, ClipTokenizer, task_text, tokenize

__all__ = ["CONTEXT_LENGTH", "EOT", "SOT", "VOCAB_SIZE", "ClipTokenizer", "task_text", "tokenize"]
