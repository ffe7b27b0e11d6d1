"""Atomic, pickle-free storage: JSON for summaries, Parquet for per-prompt tables.

Numbers are stored at a stated precision: every float in a JSON document, a Parquet table or a
CSV (`FLOAT_FORMAT`) is rounded to `SIGNIFICANT_DIGITS` (6) significant digits by Python's
correctly rounded decimal conversion (the same on every machine). The computations run in
float32 (about 7 significant digits), so the digits dropped are ones that the order of a float32
sum can move. This does not make a rerun on another CPU byte-identical: a value within noise of a
rounding boundary still flips, and quantities that are themselves noise (the attribution of a
head whose true effect is 0, ~1e-11, and rank correlations over such values) move by far more
than any relative precision. So a fresh clone does not recompute: every output is committed,
the Parquet tables included, and nothing reruns (dvc.yaml, README "Reproducibility").

Outputs are checked before any work (`check_output_path`): not a pickle, not a folder, not an
input of the same run, not a git-tracked project file outside `results/`, in a folder that can
be created and written. The check creates nothing: the folder is made at the write, so a run
that fails creates no folder. Every file is written to a temporary sibling `.<name>.<random>.tmp`
and moved into place with `os.replace`, so an interrupted stage leaves the old file or the new
one, never half of one. A temporary file that a SIGKILL left behind is ignored by git and DVC
(`.gitignore`, `.dvcignore`: `.*.tmp`) and deleted by the next write of the same output. Every
JSON document carries a `schema` string that readers check, and a JSON document or Parquet table
replaces an existing file only if that file holds the same kind of output (`schema_kind`: the
schema without its version); analysis.base.contract checks the same before any work, naming what the
file is and which command writes it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.base.errors import InputError

SCHEMA_PREFIX = "emotion-heads/"
SIGNIFICANT_DIGITS = 6
FLOAT_FORMAT = f"%.{SIGNIFICANT_DIGITS}g"  # for pandas' to_csv: the same rounding as the JSON
TRACKED_OUTPUTS = "results"  # the only top-level folder whose git-tracked files an output may replace
_REFUSED_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib"}
_TMP_SUFFIX = ".tmp"

PathLike = str | os.PathLike[str]


def round_float(x: float) -> float:
    """`x` at SIGNIFICANT_DIGITS significant digits (decimal rounding, identical on every machine)."""
    return float(FLOAT_FORMAT % x)


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _git_tracked_outside_results(p: Path) -> str | None:
    """The repository path of `p` if git tracks it outside results/, else None (also: no git, no repo)."""
    where = _nearest_existing(p.parent)
    try:
        r = subprocess.run(
            ["git", "-C", str(where), "ls-files", "--full-name", "--", str(p.resolve())],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    name = r.stdout.strip() if r.returncode == 0 else ""
    return name if name and Path(name).parts[0] != TRACKED_OUTPUTS else None


def _is_within(p: Path, folder: Path) -> bool:
    return p == folder or folder in p.parents


def check_output_path(path: PathLike, *, suffix: str | None = None, inputs: Iterable[PathLike] = ()) -> Path:
    """Check an output path before any work is done; create nothing. Returns it as a Path.

    `inputs`: the files and folders this run reads; the output may be none of them, nor inside one.
    """
    p = Path(path)
    if p.suffix.lower() in _REFUSED_SUFFIXES:
        raise InputError(
            f"output {p} ends in {p.suffix}: pickled outputs are refused (they run code when "
            f"loaded); use .json for summaries or .parquet for tables"
        )
    if suffix is not None and p.suffix.lower() != suffix:
        raise InputError(f"output {p} must end in {suffix}")
    if p.is_dir():
        raise InputError(f"output {p} is a folder; give a file name")
    target = p.resolve()
    for inp in inputs:
        if _is_within(target, Path(inp).resolve()):
            raise InputError(f"output {p} is an input of this run ({inp}); it would be overwritten, choose another path")
    tracked = _git_tracked_outside_results(p)
    if tracked is not None:
        raise InputError(
            f"output {p} is the git-tracked project file {tracked}; outputs may replace tracked files only "
            f"under {TRACKED_OUTPUTS}/"
        )
    folder = _nearest_existing(p.parent)
    if not folder.is_dir():
        raise InputError(f"cannot create the folder of output {p}: {folder} is a file")
    try:  # an unnamed temporary file (O_TMPFILE): writable or not, the folder shows nothing afterwards
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise InputError(f"cannot write output {p}: folder {folder}: {err.strerror}") from None
    return p


def check_output_dir(path: PathLike, *, inputs: Iterable[PathLike] = ()) -> Path:
    """`check_output_path` for an output that is a folder (it may exist, as a folder); creates nothing."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"output {p} exists and is not a folder")
    check_output_path(p / ".probe", inputs=inputs)  # the rules for a file inside it: inputs, tracked, writable
    return p


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it over `path`, else delete it."""
    target = check_output_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the folder of output {target}: {err.strerror}") from None
    prefix = f".{target.name}."
    for stale in target.parent.glob(f"{prefix}*{_TMP_SUFFIX}"):  # left by a killed write of this output
        if stale.is_file():
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=_TMP_SUFFIX, dir=target.parent)
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


def schema_kind(schema: str) -> str:
    """`emotion-heads/ablation/v2` -> `emotion-heads/ablation`: a new version replaces the old one."""
    head, _, version = schema.rpartition("/")
    return head if version[:1] == "v" and version[1:].isdigit() else schema


def existing_schema(path: PathLike) -> str | None:
    """The `schema` tag of an existing JSON document or Parquet table at `path`; None when the file
    is absent, is neither, or carries no emotion-heads schema (read leniently: this only names it)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        if p.suffix.lower() == ".parquet":
            meta = json.loads((pq.read_schema(p).metadata or {}).get(b"emotion_heads", b"{}"))
        else:
            meta = json.loads(p.read_text(encoding="utf-8"))
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError):
        return None
    schema = meta.get("schema") if isinstance(meta, dict) else None
    return schema if isinstance(schema, str) and schema.startswith(SCHEMA_PREFIX) else None


def _check_same_kind(path: PathLike, schema: str) -> None:
    """At the write, the last line of defence (analysis.base.contract checks before any work): an
    existing file is replaced only by the same kind of output."""
    p = Path(path)
    if not p.exists():
        return
    found = existing_schema(p)
    if found is None or schema_kind(found) != schema_kind(schema):
        what = f"a {found} document" if found else "not an emotion-heads output"
        raise InputError(f"output {p} exists and is {what}; a {schema} output replaces only its own kind, nothing written")


def _rounded(obj: Any, where: str = "$") -> Any:
    """`obj` with every float rounded (round_float); NaN and infinity are refused, naming where."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise InputError(f"refusing to write a non-finite number ({obj}) at {where}")
        return round_float(obj)
    if isinstance(obj, dict):
        return {k: _rounded(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


def write_json(path: PathLike, doc: dict[str, Any]) -> Path:
    """Write `doc` atomically as sorted, indented JSON, floats rounded; NaN and infinity are refused."""
    if not str(doc.get("schema", "")).startswith(SCHEMA_PREFIX):
        raise ValueError(f"document for {path} has no emotion-heads schema")
    _check_same_kind(path, doc["schema"])
    text = json.dumps(_rounded(doc), indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json(path: PathLike, schema: str | None = None) -> dict[str, Any]:
    """Read a JSON document; a missing, unreadable or non-JSON file or another schema is an InputError."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {p} does not exist")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"input file {p} is not UTF-8 text (byte {err.start}): not a JSON document") from None
    except json.JSONDecodeError as err:
        raise InputError(f"input file {p} is not valid JSON: {err.msg} at line {err.lineno}") from None
    if schema is not None and (not isinstance(doc, dict) or doc.get("schema") != schema):
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"input file {p} has schema {found!r}, expected {schema!r}")
    return doc


def _rounded_column(col: pd.Series) -> pd.Series:
    """Float columns rounded like the JSON (same dtype); lists of floats element by element."""
    if pd.api.types.is_float_dtype(col):
        values = col.to_numpy()
        if not np.isfinite(values[~pd.isna(values)]).all():
            raise InputError(f"refusing to write a non-finite number in column {col.name!r}")
        return pd.Series([v if pd.isna(v) else round_float(float(v)) for v in values], index=col.index,
                         name=col.name, dtype=col.dtype)
    if col.dtype == object and any(isinstance(v, (list, tuple, np.ndarray)) for v in col):
        return col.map(lambda v: _rounded([x.item() if isinstance(x, np.generic) else x for x in v], str(col.name))
                       if isinstance(v, (list, tuple, np.ndarray)) else v)
    return col


def write_parquet(path: PathLike, table: pd.DataFrame, metadata: dict[str, Any]) -> Path:
    """Write a per-prompt table atomically, floats rounded; `metadata` (with `schema`) goes in the footer."""
    if not str(metadata.get("schema", "")).startswith(SCHEMA_PREFIX):
        raise ValueError(f"table for {path} has no emotion-heads schema")
    check_output_path(path, suffix=".parquet")
    _check_same_kind(path, metadata["schema"])
    rounded = table.apply(_rounded_column) if len(table.columns) else table
    arrow = pa.Table.from_pandas(rounded, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[b"emotion_heads"] = json.dumps(_rounded(metadata), sort_keys=True).encode()
    arrow = arrow.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)
    return Path(path)


def read_parquet(path: PathLike, schema: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table written by `write_parquet` and its metadata; a file that is not one is an InputError."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file {p} does not exist")
    try:
        arrow = pq.read_table(p)
        meta = json.loads((arrow.schema.metadata or {}).get(b"emotion_heads", b"{}"))
    except (pa.ArrowException, OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"input file {p} is not a readable Parquet table: {str(err).splitlines()[0]}") from None
    if schema is not None and (not isinstance(meta, dict) or meta.get("schema") != schema):
        found = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f"input file {p} has schema {found!r}, expected {schema!r}")
    return arrow.to_pandas(), meta
