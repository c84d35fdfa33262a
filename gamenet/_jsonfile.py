"""
Reading the JSON files a cluster file names (route dictionaries, crons files).
"""

from __future__ import annotations

import json
from typing import Any


def read_json(path: str) -> Any:
    """
    The value of the JSON file at C{path}.

    @raise ValueError: it cannot be read, or is not JSON; the sentence names the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
