"""The levels a detection trunk can return: `return_indices` 0..3 = strides 4, 8, 16, 32."""

from typing import List, Sequence


def check_return_indices(return_indices: Sequence[int]) -> List[int]:
    """`return_indices` sorted; ValueError unless it is a non-empty subset of 0..3."""
    bad = [i for i in return_indices if i not in (0, 1, 2, 3)]
    if bad or not return_indices:
        raise ValueError(
            f"return_indices must be a non-empty subset of 0..3 (levels of strides 4..32), got {list(return_indices)}"
        )
    return sorted(return_indices)
