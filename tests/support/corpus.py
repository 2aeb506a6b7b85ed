"""Where the shared test corpus is: HUB_CORPUS_DIR, else `shared/corpus` beside the checkout (as
CI lays it out), else the workplace's own copy."""

from __future__ import annotations

import os
from pathlib import Path

_BESIDE = Path(__file__).resolve().parents[3] / "shared" / "corpus"
CORPUS = Path(os.environ.get("HUB_CORPUS_DIR") or (
    _BESIDE if _BESIDE.is_dir() else Path("/work/shared/corpus")))
