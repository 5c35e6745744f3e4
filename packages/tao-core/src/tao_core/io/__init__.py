"""File helpers shared by every package."""

from tao_core.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]
