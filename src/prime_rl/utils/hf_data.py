"""Rows of a Hugging Face `datasets` dataset, as SFT and the `dataset` environment read them: a `save_to_disk`
directory (`load_from_disk`), a local json/jsonl/parquet/arrow/csv file or directory of such files (`load_dataset`),
or a hub id (`load_dataset(id, subset, split=...)`, which needs the Hub to be reachable).

`datasets` is imported only here, when such data is configured. Every failure is a ValueError naming the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}
"""Local file suffix → the `load_dataset` builder that reads it."""
SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
"""Files that `save_to_disk` writes: a directory holding one is read with `load_from_disk`."""


def _looks_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or source.count("/") >= 2 or Path(source).suffix in FILE_BUILDERS


def _pick_split(data: Any, source: str, split: str) -> Any:
    if not hasattr(data, "keys"):  # a single Dataset: it is the split
        return data
    if split not in data:
        raise ValueError(f"dataset `{source}` has no split `{split}` (splits: {', '.join(data)})")
    return data[split]


def _load_local(path: Path, source: str, split: str) -> Any:
    import datasets

    if path.is_dir() and any((path / name).is_file() for name in SAVED_MARKERS):
        return _pick_split(datasets.load_from_disk(str(path)), source, split)
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise ValueError(f"dataset `{source}`: unknown file type `{path.suffix}` (use {', '.join(FILE_BUILDERS)})")
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    return datasets.load_dataset(str(path), split=split)  # a directory of data files


def _load_hub(source: str, subset: str | None, split: str) -> Any:
    import datasets

    try:
        return datasets.load_dataset(source, subset, split=split)
    except ConnectionError as e:
        raise ValueError(
            f"dataset `{source}` is not a local path, and the Hugging Face Hub could not be reached to load it as a "
            f"hub id ({e}); download it where the Hub is reachable (`load_dataset(...).save_to_disk(dir)`) and give "
            "that directory"
        ) from None


def load_hf_rows(source: str, split: str = "train", subset: str | None = None) -> list[dict]:
    """The rows of `split` of a local dataset (directory or file) or a hub id, as dicts of column → value."""
    path = Path(source).expanduser()
    if path.exists():
        data = _load_local(path, source, split)
    elif _looks_local(source):
        raise ValueError(f"dataset `{source}` not found (no such file or directory)")
    else:
        data = _load_hub(source, subset, split)
    return data.to_list()


def column(row: dict, name: str, source: str, index: int) -> Any:
    """`row[name]`, or a ValueError naming the dataset, the row and the columns it has."""
    if name not in row:
        raise ValueError(f"dataset `{source}` row {index}: no column `{name}` (columns: {', '.join(row)})")
    return row[name]
