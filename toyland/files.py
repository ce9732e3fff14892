"""Small files written so that a kill leaves the old version or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json_atomic(path: str | Path, obj, **kwargs) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, **kwargs))
