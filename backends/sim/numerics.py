"""Element types and the numerics the simulator needs beyond numpy.

Ensures:
* `numpy_dtype` maps every WKL `DType` to the numpy dtype that stores it (bf16 and fp8 e4m3 come
  from `ml_dtypes`, never from hand-written bit manipulation);
* `lift` widens low-precision floats to float32, so every op computes in f32 as PyTorch's CPU
  kernels do, and `round_to` rounds a result to its declared type;
* `erf` is W. J. Cody's rational Chebyshev approximation ("Rational Chebyshev approximations for
  the error function", Math. Comp. 1969; netlib specfun CALERF), vectorised in float64. numpy has
  no erf and the project does not depend on scipy.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from ir.types import DType

_NUMPY_DTYPES = {
    DType.f32: np.dtype(np.float32),
    DType.f16: np.dtype(np.float16),
    DType.bf16: np.dtype(ml_dtypes.bfloat16),
    DType.fp8: np.dtype(ml_dtypes.float8_e4m3fn),  # torch.float8_e4m3fn
    DType.i64: np.dtype(np.int64),
    DType.i32: np.dtype(np.int32),
    DType.i8: np.dtype(np.int8),
    DType.bool: np.dtype(np.bool_),
}
_FP8_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)  # 448
_LOW_PRECISION = {_NUMPY_DTYPES[d] for d in (DType.f16, DType.bf16, DType.fp8)}


def numpy_dtype(dtype: DType) -> np.dtype:
    """The numpy dtype that holds values of a WKL element type."""
    return _NUMPY_DTYPES[dtype]


def lift(array: np.ndarray) -> np.ndarray:
    """`array` widened to float32 if it holds a low-precision float, else unchanged."""
    return array.astype(np.float32) if array.dtype in _LOW_PRECISION else array


def round_to(array, dtype: DType) -> np.ndarray:
    """`array` converted (rounded to nearest even for floats) to the declared element type.

    Conversion to fp8 saturates at +-448 (infinities included) as torch's float8_e4m3fn
    conversion does; ml_dtypes alone would give NaN."""
    array = np.asarray(array)
    target = numpy_dtype(dtype)
    if dtype is DType.fp8 and array.dtype != target:
        array = np.clip(array.astype(np.float32, copy=False), -_FP8_MAX, _FP8_MAX)
    return array.astype(target, copy=False)


# ---------------------------------------------------------------- erf (Cody, double precision)

_ERF_SMALL_NUM = (0.185777706184603153, 3.16112374387056560, 113.864154151050156,
                  377.485237685302021, 3209.37758913846947)
_ERF_SMALL_DEN = (1.0, 23.6012909523441209, 244.024637934444173, 1282.61652607737228,
                  2844.23683343917062)
_ERFC_MID_NUM = (2.15311535474403846e-8, 0.564188496988670089, 8.88314979438837594,
                 66.1191906371416295, 298.635138197400131, 881.952221241769090,
                 1712.04761263407058, 2051.07837782607147, 1230.33935479799725)
_ERFC_MID_DEN = (1.0, 15.7449261107098347, 117.693950891312499, 537.181101862009858,
                 1621.38957456669019, 3290.79923573345963, 4362.61909014324716,
                 3439.36767414372164, 1230.33935480374942)
_ERFC_BIG_NUM = (0.0163153871373020978, 0.305326634961232344, 0.360344899949804439,
                 0.125781726111229246, 0.0160837851487422766, 6.58749161529837803e-4)
_ERFC_BIG_DEN = (1.0, 2.56852019228982242, 1.87295284992346047, 0.527905102951428412,
                 0.0605183413124413191, 0.00233520497626869185)
_ONE_OVER_SQRT_PI = 0.56418958354775628695
_SMALL_LIMIT = 0.46875  # Cody's split points: |x| <= 0.46875, <= 4, > 4
_MID_LIMIT = 4.0
_ERFC_ZERO_FROM = 27.0  # erfc(x) underflows to 0 in float64 beyond 26.55


def _poly(coeffs: tuple[float, ...], z: np.ndarray) -> np.ndarray:
    """Horner evaluation, highest power first."""
    acc = np.full_like(z, coeffs[0])
    for c in coeffs[1:]:
        acc = acc * z + c
    return acc


def _exp_neg_square(y: np.ndarray) -> np.ndarray:
    """exp(-y*y), split as Cody does so the rounding of y*y does not cost accuracy."""
    y16 = np.trunc(y * 16.0) / 16.0
    return np.exp(-y16 * y16) * np.exp(-(y - y16) * (y + y16))


def _erfc_of_abs(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y > 0.46875 (the other entries are computed but not used)."""
    y = np.minimum(y, _ERFC_ZERO_FROM)  # keeps inf out of the exp split; erfc is 0 there anyway
    mid = _poly(_ERFC_MID_NUM, y) / _poly(_ERFC_MID_DEN, y)
    z = 1.0 / (y * y)
    big = (_ONE_OVER_SQRT_PI - z * _poly(_ERFC_BIG_NUM, z) / _poly(_ERFC_BIG_DEN, z)) / y
    return np.where(y <= _MID_LIMIT, mid, big) * _exp_neg_square(y)


def erf(x) -> np.ndarray:
    """The error function of every element of `x`, in float64 (abs error ~1e-16)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    with np.errstate(all="ignore"):  # each branch is evaluated everywhere, then selected
        z = y * y
        small = x * _poly(_ERF_SMALL_NUM, z) / _poly(_ERF_SMALL_DEN, z)
        large = np.copysign(1.0 - _erfc_of_abs(y), x)
        return np.where(y <= _SMALL_LIMIT, small, np.where(np.isnan(x), x, large))
