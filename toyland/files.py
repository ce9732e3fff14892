"""Small files written so that a kill leaves the old version or the new one, never half of one."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    # a temp name of its own per writer: two processes writing one file (two `--only` runs of a study)
    # must not rename each other's half-written temp away
    # (not mkstemp: it would make the file readable by its owner only)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj, **kwargs) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, **kwargs))
