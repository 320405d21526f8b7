"""The safetensors format one tensor at a time: `TensorFile` reads a tensor into fresh memory without mapping the
file (a mapped file's touched pages count as the reader's resident memory until it is unmapped), and
`write_tensor_file` writes tensors straight from their memory (`safetensors.torch.save_file` first copies them all
into one bytes object). A weight update or broadcast then holds one tensor beyond the model, not a copy of it."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""safetensors dtype codes and their torch dtypes."""

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""Largest JSON header accepted (the format's own limit)."""

CHUNK_BYTES = 4 * 1024 * 1024
"""Default size of `TensorFile.chunks` (a [49152, 576] float32 embedding is 108 MiB)."""


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    """safetensors dtype code (`F32`, `BF16`, ...)."""
    shape: tuple[int, ...]
    start: int
    """Offset of the first byte in the file."""
    nbytes: int


class TensorFile:
    """An open safetensors file: its header (`entries`) and `read(name)`. The open descriptor keeps the file
    readable if it is replaced or deleted meanwhile. ValueError names the file when the header is unusable."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self.entries = self._read_header()
        except Exception:
            os.close(self._fd)
            raise

    def _read_header(self) -> dict[str, TensorEntry]:
        size = os.fstat(self._fd).st_size
        raw = os.pread(self._fd, 8, 0)
        length = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"`{self.path}` is not a safetensors file (header length {length}, file size {size})")
        try:
            header = json.loads(os.pread(self._fd, length, 8))
            header.pop("__metadata__", None)
            entries = {}
            for name, info in header.items():
                begin, end = info["data_offsets"]
                entries[name] = TensorEntry(info["dtype"], tuple(info["shape"]), 8 + length + begin, end - begin)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError(f"`{self.path}` has an unusable safetensors header: {e!r}") from None
        for name, entry in entries.items():
            if entry.start + entry.nbytes > size or entry.nbytes < 0:
                raise ValueError(f"`{self.path}`: tensor `{name}` lies beyond the end of the file ({size} bytes)")
        return entries

    def dtype(self, name: str) -> torch.dtype:
        code = self.entries[name].dtype
        if code not in DTYPES:
            raise ValueError(f"`{self.path}`: tensor `{name}` has dtype {code}, which is not supported")
        return DTYPES[code]

    def read(self, name: str, out: Tensor | None = None) -> Tensor:
        """The tensor `name`, in fresh CPU memory, or read straight into `out` (a contiguous CPU tensor of its dtype
        and number of elements, e.g. the parameter it updates: no copy in between)."""
        entry, dtype = self.entries[name], self.dtype(name)
        self._check_size(name, entry.shape, dtype)
        if out is None:
            out = torch.empty(entry.shape, dtype=dtype)
        elif out.dtype != dtype or out.numel() != math.prod(entry.shape) or not out.is_contiguous() or out.is_cuda:
            raise ValueError(
                f"`{self.path}`: tensor `{name}` ({entry.dtype}, {entry.shape}) cannot be read into a "
                f"{'' if out.is_contiguous() else 'non-contiguous '}{out.dtype} tensor of shape {tuple(out.shape)} "
                f"on {out.device}"
            )
        self._read_bytes(name, out.detach().reshape(-1).view(torch.uint8), entry.start)
        return out.view(entry.shape)

    def chunks(self, name: str, max_bytes: int = CHUNK_BYTES) -> Iterator[Tensor]:
        """The elements of tensor `name` in order, as flat tensors of at most `max_bytes` read one after the other
        into one buffer (each is overwritten by the next): a pass over a tensor without holding all of it."""
        entry, dtype = self.entries[name], self.dtype(name)
        self._check_size(name, entry.shape, dtype)
        numel, itemsize = math.prod(entry.shape), dtype.itemsize
        per_chunk = max(max_bytes // itemsize, 1)
        buffer = torch.empty(min(per_chunk, numel), dtype=dtype)
        for first in range(0, numel, per_chunk):
            chunk = buffer[: min(per_chunk, numel - first)]
            self._read_bytes(name, chunk.view(torch.uint8), entry.start + first * itemsize)
            yield chunk

    def _check_size(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        need = math.prod(shape) * dtype.itemsize
        if need != self.entries[name].nbytes:
            raise ValueError(
                f"`{self.path}`: tensor `{name}` has {self.entries[name].nbytes} bytes, its shape and dtype need {need}"
            )

    def _read_bytes(self, name: str, dest: Tensor, offset: int) -> None:
        view = memoryview(dest.numpy())
        done = 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got == 0:
                raise ValueError(f"`{self.path}` ended inside tensor `{name}`")
            done += got

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_tensor_file(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Writes `tensors` to `path` in the safetensors format (readable by `safetensors.safe_open`), each tensor from
    its own memory (a non-contiguous or non-CPU one is copied alone)."""
    codes = {dtype: code for code, dtype in DTYPES.items()}
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, tensor in tensors.items():
        if tensor.dtype not in codes:
            raise ValueError(f"tensor `{name}` has dtype {tensor.dtype}, which safetensors cannot store")
        header[name] = {
            "dtype": codes[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for tensor in tensors.values():
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            if flat.numel():
                f.write(memoryview(flat.view(torch.uint8).numpy()))
