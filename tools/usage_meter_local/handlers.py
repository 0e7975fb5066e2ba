"""Load a function's handler from functions/<name>/app.py the way Lambda does (by file)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from usage_meter_local.template import ROOT

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def load_handler(code_uri: str, handler: str = "app.lambda_handler") -> Handler:
    """Import `<code_uri>/<module>.py` under a unique module name (every function has an app.py)."""
    module_name, function_name = handler.rsplit(".", 1)
    folder = (ROOT / code_uri).resolve()
    unique = f"usage_meter_fn_{folder.name}_{module_name}"
    module = sys.modules.get(unique)
    if module is None:
        spec = importlib.util.spec_from_file_location(unique, Path(folder) / f"{module_name}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"no handler module at {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
    fn: Handler = getattr(module, function_name)
    return fn
