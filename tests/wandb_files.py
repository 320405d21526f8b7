"""Reads what W&B wrote offline: the records of a run's `.wandb` file (a LevelDB-style log of protobuf `Record`s,
the file `wandb sync` uploads), reduced to the run's identity, its history rows and its logged tables."""

from __future__ import annotations

import json
from pathlib import Path

BLOCK = 32768
HEADER = 7  # the file header (":W&B", magic, version) and each chunk header (crc32, length, type) are 7 bytes
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b":W&B", "not a .wandb file"
    pos, pending, records = HEADER, b"", []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        kind = data[pos + 6] if left >= HEADER else 0
        if kind == 0:  # block trailer padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            records.append(pending + chunk)
    return records


def read_offline_run(run_dir: Path) -> dict:
    """`{"id", "project", "tags", "history": [row, ...], "tables": {key: [(step, rows), ...]}}` of an offline run
    directory (`.../wandb/offline-run-<time>-<id>`); history rows map keys to values, `_step` included."""
    from wandb.proto.wandb_internal_pb2 import Record

    (path,) = Path(run_dir).glob("run-*.wandb")
    out: dict = {"history": [], "tables": {}}
    for chunk in _chunks(path.read_bytes()):
        record = Record.FromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out |= {"id": record.run.run_id, "project": record.run.project, "tags": list(record.run.tags)}
        elif kind == "history":
            row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
            out["history"].append(row)
            for key, value in row.items():
                if key.endswith("/path") and row.get(key[: -len("path")] + "_type") == "table-file":
                    table = json.loads((Path(run_dir) / "files" / value).read_text())
                    out["tables"].setdefault(key[: -len("/path")], []).append((row["_step"], table))
    return out


def offline_run_dirs(root: Path) -> list[Path]:
    """The offline run directories under `root` (a `dir` given to `wandb.init`), oldest first."""
    return sorted(Path(root).glob("wandb/offline-run-*"))
