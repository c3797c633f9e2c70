"""Per-dataset recipes: the hyperparameters ``ncbench run`` uses by default, and where they came from.

A recipe file ``<dataset>.toml`` (in the repository's ``recipes/`` folder, installed as the package
data ``ncbench.recipe_files``; ``--recipes DIR`` reads another folder) holds one table per method and
backbone::

    [vanilla.vse_bow]
    method = { lr = 0.002, epochs = 20, lr_update = 12, warmup_epochs = 1, batch_size = 64 }
    backbone = { image_head = "shift" }

    [vanilla.vse_bow.tuning]          # written by `ncbench tune`: how the values were chosen
    budget = 16
    objective = "mean best-validation rSum over noise 0.2, 0.5, 0.8 (seeds 0) on the dev split"
    ...

A run's options are, in order of precedence: the method's defaults (its paper's), the method's
per-dataset defaults (``dataset_defaults``: the papers' values for f30k/coco/cc152k), the recipe,
the user's ``--method-opt``/``--backbone-opt``. Methods that share another's recipe (``recipe_of``,
e.g. ``clean_oracle`` → ``vanilla``) read that method's entry. Every result records which of these
gave its values (``config.recipe``), so a board can show how each row was tuned.
"""

from __future__ import annotations

import importlib.resources
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PACKAGE = "ncbench.recipe_files"


class RecipeError(ConfigError):
    """A recipe file that cannot be used (unreadable, not TOML, wrong structure)."""


@dataclass(frozen=True)
class Recipe:
    """The options of one (method, backbone) on one dataset, and how they were chosen."""

    method: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)  # empty: written by hand
    source: str = ""  # the file

    def provenance(self) -> dict[str, Any]:
        how = "tuned" if self.tuning else "recipe"
        return {"source": self.source, "kind": how, "tuning": dict(self.tuning)}


def default_folder() -> Path:
    """The recipes that ship with ncbench: the package data ``ncbench.recipe_files`` (installed from the
    repository's ``recipes/``), or that folder itself in a source checkout run without installing."""
    try:
        return Path(str(importlib.resources.files(PACKAGE)))
    except ModuleNotFoundError:  # a source checkout on sys.path, not installed
        return Path(__file__).resolve().parent.parent / "recipes"


def recipe_file(dataset: str, folder: Path | None = None) -> Path:
    return Path(folder or default_folder()) / f"{dataset}.toml"


def load_recipes(dataset: str, folder: Path | None = None) -> dict[tuple[str, str], Recipe]:
    """All recipes of ``dataset`` by (method, backbone); none when the dataset has no recipe file. A
    ``folder`` given (``--recipes DIR``) must exist: a mistyped one would silently train on defaults."""
    if folder is not None and not Path(folder).is_dir():
        raise RecipeError(f"{folder}: recipes folder not found (--recipes names a folder of <dataset>.toml files)")
    path = recipe_file(dataset, folder)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    out = {}
    for method, per_backbone in data.items():
        if not isinstance(per_backbone, dict):
            raise RecipeError(f"{path}: {method!r} must be a table of backbones ([{method}.<backbone>]), "
                              f"found {type(per_backbone).__name__}")
        for backbone, entry in per_backbone.items():
            where = f"{path}: [{method}.{backbone}]"
            if not isinstance(entry, dict):
                raise RecipeError(f"{where} must be a table with 'method' and 'backbone' option tables")
            unknown = sorted(set(entry) - {"method", "backbone", "tuning"})
            if unknown:
                raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)} (expected method, backbone, tuning)")
            for key in ("method", "backbone", "tuning"):
                if not isinstance(entry.get(key, {}), dict):
                    raise RecipeError(f"{where}: '{key}' must be a table of options")
            opts = {k: _from_toml(v) for k, v in entry.get("method", {}).items()}
            out[(method, backbone)] = Recipe(opts, dict(entry.get("backbone", {})), dict(entry.get("tuning", {})), str(path))
    return out


def _from_toml(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# -- writing -----------------------------------------------------------------------------------
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write {v} to a recipe")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return _inline(v)
    raise ValueError(f"cannot write {type(v).__name__} {v!r} to a recipe")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _value(k)


def _inline(d: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in d.items()) + " }" if d else "{}"


def render(recipes: dict[tuple[str, str], Recipe], dataset: str) -> str:
    lines = [f"# Recipes for {dataset}: the options `ncbench run --dataset {dataset}` uses by default.",
             "# Written by `ncbench tune` (selection on the dev split only; the test split is never read) and",
             "# reviewed like code. Precedence: method defaults < dataset_defaults < this file < --method-opt.", ""]
    for (method, backbone), r in sorted(recipes.items()):
        lines += [f"[{_key(method)}.{_key(backbone)}]", f"method = {_inline(r.method)}", f"backbone = {_inline(r.backbone)}"]
        if r.tuning:
            lines += ["", f"[{_key(method)}.{_key(backbone)}.tuning]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in r.tuning.items()]
        lines.append("")
    return "\n".join(lines)


def write_recipe(dataset: str, method: str, backbone: str, recipe: Recipe, folder: Path) -> Path:
    """Put one (method, backbone) entry into ``folder/<dataset>.toml``, keeping the others (atomic)."""
    path = recipe_file(dataset, folder)
    recipes = load_recipes(dataset, folder) if Path(folder).is_dir() else {}  # the first recipe creates it
    recipes[(method, backbone)] = recipe
    text = render(recipes, dataset)
    tomllib.loads(text)  # what is written must read back
    write_text_atomic(path, text)
    return path


def today() -> str:
    return time.strftime("%Y-%m-%d")
