"""Writing a built tokenizer into its committed folder, shared by every builder of this room."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def save_tokenizer(tokenizer: Any, output: Path, files: Sequence[str], prefix: str) -> list[Path]:
    """Replace `files` in `output` with the tokenizer's save_pretrained files, each by os.replace from a
    temporary folder inside `output` (so a failed or interrupted build leaves the committed files as
    they were); other files there are kept. Refuses a save that writes other files than `files`."""
    output.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}.", dir=output))
    try:
        tokenizer.save_pretrained(tmp)
        written = sorted(f.name for f in tmp.iterdir())
        if written != sorted(files):
            raise RuntimeError(f"save_pretrained wrote {written}, expected {sorted(files)}")
        for name in files:
            (tmp / name).chmod(0o644)
            os.replace(tmp / name, output / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [output / name for name in files]
