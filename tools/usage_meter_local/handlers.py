"""Load a function's handler from functions/<name>/app.py the way Lambda does (by file)."""

from __future__ import annotations

import importlib.util
import sys
import threading
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
    with _loading:  # a module is in sys.modules before it has finished executing
        return _load(unique, folder, module_name, function_name)


_loading = threading.Lock()


def _load(unique: str, folder: Path, module_name: str, function_name: str) -> Handler:
    module = sys.modules.get(unique)
    if module is None:
        spec = importlib.util.spec_from_file_location(unique, Path(folder) / f"{module_name}.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"no handler module at {folder}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[unique]  # a failed import must not look loaded
            raise
    fn: Handler = getattr(module, function_name)
    return fn
