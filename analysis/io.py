"""Atomic, pickle-free storage: JSON for summaries, Parquet for per-prompt tables.

Every file is written to a temporary sibling and moved into place with `os.replace`, so an
interrupted stage leaves either the old file or the new one, never half of one. Every JSON
document carries a `schema` string that readers check.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.errors import InputError

SCHEMA_PREFIX = "emotion-heads/"
_REFUSED_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib"}


def check_output_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Path:
    """Validate an output path before any work is done, and create its folder."""
    p = Path(path)
    if p.suffix.lower() in _REFUSED_SUFFIXES:
        raise InputError(
            f"output {p} ends in {p.suffix}: pickled outputs are refused (they run code when "
            f"loaded); use .json for summaries or .parquet for tables"
        )
    if suffix is not None and p.suffix.lower() != suffix:
        raise InputError(f"output {p} must end in {suffix}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the folder of output {p}: {err.strerror}") from None
    return p


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it over `path`, else delete it."""
    target = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file owner-only; results are meant to be read like any other file.
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _reject_nan(obj: Any, where: str = "$") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise InputError(f"refusing to write a non-finite number ({obj}) at {where}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _reject_nan(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _reject_nan(v, f"{where}[{i}]")


def write_json(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write `doc` atomically as sorted, indented JSON; NaN and infinity are refused."""
    if not str(doc.get("schema", "")).startswith(SCHEMA_PREFIX):
        raise ValueError(f"document for {path} has no emotion-heads schema")
    _reject_nan(doc)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike[str], schema: str | None = None) -> dict[str, Any]:
    """Read a JSON document; a missing file or another schema is an InputError naming it."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {p} does not exist")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"input file {p} is not valid JSON: {err.msg} at line {err.lineno}") from None
    if schema is not None and (not isinstance(doc, dict) or doc.get("schema") != schema):
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"input file {p} has schema {found!r}, expected {schema!r}")
    return doc


def write_parquet(path: str | os.PathLike[str], table: pd.DataFrame, metadata: dict[str, Any]) -> Path:
    """Write a per-prompt table atomically; `metadata` (with `schema`) goes in the file footer."""
    if not str(metadata.get("schema", "")).startswith(SCHEMA_PREFIX):
        raise ValueError(f"table for {path} has no emotion-heads schema")
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[b"emotion_heads"] = json.dumps(metadata, sort_keys=True).encode()
    arrow = arrow.replace_schema_metadata(meta)
    check_output_path(path, suffix=".parquet")
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)
    return Path(path)


def read_parquet(path: str | os.PathLike[str], schema: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table written by `write_parquet` and its metadata."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {p} does not exist")
    arrow = pq.read_table(p)
    meta = json.loads((arrow.schema.metadata or {}).get(b"emotion_heads", b"{}"))
    if schema is not None and meta.get("schema") != schema:
        raise InputError(f"input file {p} has schema {meta.get('schema')!r}, expected {schema!r}")
    return arrow.to_pandas(), meta
