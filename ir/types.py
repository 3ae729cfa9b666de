"""Tensor types: a shape and an element type. Plain data, shared by the IR and WKL."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class DType(Enum):
    """Element types, spelled as they print in IR and WKL."""

    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    fp8 = "fp8"  # e4m3
    i64 = "i64"
    i32 = "i32"
    i8 = "i8"
    bool = "bool"

    @property
    def nbytes(self) -> int:
        return _NBYTES[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.f32, DType.f16, DType.bf16, DType.fp8)

    def __str__(self) -> str:
        return self.value


_NBYTES = {DType.f32: 4, DType.f16: 2, DType.bf16: 2, DType.fp8: 1, DType.i64: 8, DType.i32: 4,
           DType.i8: 1, DType.bool: 1}


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: DType

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.nbytes

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(int(d) for d in shape), self.dtype)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"
