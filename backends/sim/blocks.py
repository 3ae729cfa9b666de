"""Blocks of whole tensors selected by WKL slice lists, evaluated at PE coordinates.

Requires: slice lists as in `ir.wkl` (one `Slice` per dimension of the whole tensor, bounds affine
in `px`, `py`).
Ensures:
* `gather` builds the `(h, w, *block)` array a `tile`/`load` gives the PEs of a region, zero where a
  PE's block leaves the tensor (negative starts included). Slices are evaluated once per distinct
  coordinate they depend on, so a block shared by a whole row, column or region is read once.
* `write_block` copies the in-bounds part of one PE's block into a whole tensor and marks those
  elements in a coverage mask; the rest of the block is dropped.
Problems are raised as `BlockError` (a ValueError); the interpreter adds the statement's span.
"""
from __future__ import annotations

import numpy as np

from ir.wkl import Slice

Bounds = tuple[tuple[int, int], ...]  # (start, stop) per dimension, possibly outside the tensor


class BlockError(ValueError):
    """A slice list that does not fit its tensor or its local."""


def block_bounds(slices: list[Slice], shape: tuple[int, ...], px: int, py: int) -> Bounds:
    """The (start, stop) of every dimension at PE (px, py); `:` is the whole dimension."""
    if len(slices) != len(shape):
        raise BlockError(f"{len(slices)} slice(s) for a tensor of rank {len(shape)}")
    bounds = []
    for s, size in zip(slices, shape):
        start, stop = (0, size) if s.whole else (s.start.eval(px, py), s.stop.eval(px, py))
        if stop < start:
            raise BlockError(f"slice {s} is empty-backwards at px={px}, py={py} ({start} > {stop})")
        bounds.append((start, stop))
    return tuple(bounds)


def _in_bounds(bounds: Bounds, shape: tuple[int, ...]):
    """Index tuples (into the whole tensor, into the block) of their overlap, or None if empty."""
    whole_idx, block_idx = [], []
    for (start, stop), size in zip(bounds, shape):
        lo, hi = max(start, 0), min(stop, size)
        if lo >= hi:
            return None
        whole_idx.append(slice(lo, hi))
        block_idx.append(slice(lo - start, hi - start))
    return tuple(whole_idx), tuple(block_idx)


def read_block(whole: np.ndarray, bounds: Bounds) -> np.ndarray:
    """whole[bounds], zero-padded where the bounds leave the tensor."""
    block = np.zeros([stop - start for start, stop in bounds], dtype=whole.dtype)
    overlap = _in_bounds(bounds, whole.shape)
    if overlap is not None:
        whole_idx, block_idx = overlap
        block[block_idx] = whole[whole_idx]
    return block


def write_block(whole: np.ndarray, covered: np.ndarray, bounds: Bounds, block: np.ndarray) -> None:
    """Store the in-bounds part of `block` into whole[bounds] and mark it in `covered`."""
    _check_block_shape(bounds, block.shape)
    overlap = _in_bounds(bounds, whole.shape)
    if overlap is not None:
        whole_idx, block_idx = overlap
        whole[whole_idx] = block[block_idx]
        covered[whole_idx] = True


def _check_block_shape(bounds: Bounds, shape: tuple[int, ...]) -> None:
    sizes = tuple(stop - start for start, stop in bounds)
    if sizes != tuple(shape):
        raise BlockError(f"the slices select a block of shape {list(sizes)}, "
                         f"but the local has shape {list(shape)}")


def _uses(slices: list[Slice], var: str) -> bool:
    return any(getattr(b, var) for s in slices if not s.whole for b in (s.start, s.stop))


def gather(whole: np.ndarray, slices: list[Slice], local_shape: tuple[int, ...],
           h: int, w: int) -> np.ndarray:
    """The `(h, w, *local_shape)` array of every PE's block of `whole`."""
    out = np.zeros((h, w, *local_shape), dtype=whole.dtype)
    # A coordinate the slices do not mention is fixed at 0 and its axis filled by broadcasting.
    rows = range(h) if _uses(slices, "py") else [None]
    cols = range(w) if _uses(slices, "px") else [None]
    for py in rows:
        for px in cols:
            bounds = block_bounds(slices, whole.shape, px or 0, py or 0)
            _check_block_shape(bounds, local_shape)
            out[_pe_index(py), _pe_index(px)] = read_block(whole, bounds)
    return out


def _pe_index(coord: int | None):
    return slice(None) if coord is None else coord
