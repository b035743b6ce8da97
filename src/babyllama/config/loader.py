"""The generic half of the configuration: a validated YAML tree of pydantic sections, with ``key=value`` overrides,
``${data_root}`` / ``${run_dir}`` interpolation, and one error line per problem (the key's full dotted path and,
for unknown keys, the keys allowed there; nanoGPT's configurator, OLMo-core). It knows no section: the schema is
:mod:`babyllama.config.stage`, :mod:`~babyllama.config.evaluation` and :mod:`~babyllama.config.recipe`.
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import UserError

PLAN_FILE = "plan.json"  # what marks a run directory (babyllama.runner.plan writes it)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class _Yaml12Loader(yaml.SafeLoader):
    """YAML as version 1.2 reads booleans: only true/false. PyYAML follows 1.1, where no/yes/on/off are booleans,
    so ``eval_strategy: no`` (or ``--set training.eval_strategy=no``) would arrive as False."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def load_yaml(text: str) -> Any:
    """A YAML document read with YAML 1.2's booleans (:class:`_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML, so numbers, lists and booleans work)."""
    if "=" not in item:
        raise UserError(f"override '{item}' is not key=value; write e.g. --set training.learning_rate=3e-4")
    key, raw = item.split("=", 1)
    try:
        value = load_yaml(raw) if raw != "" else None
    except yaml.YAMLError:
        raise UserError(f"override '{item}': the value is not valid YAML; quote strings, e.g. "
                        f"--set '{key}=\"{raw}\"'") from None
    return key.strip().split("."), value


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Set each ``a.b.c=value`` in the raw tree; a number steps into a list (``teachers.0.training.seed=3``)."""
    for item in overrides:
        keys, value = parse_override(item)
        node: Any = tree
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not k.isdigit() or int(k) >= len(node):
                    raise UserError(f"override '{item}': '{k}' is not an index of the {len(node)} entries there")
                if last:
                    node[int(k)] = value
                else:
                    node = node[int(k)]
                continue
            if not isinstance(node, dict):
                raise UserError(f"override '{item}': '{keys[i - 1]}' is not a section")
            if last:
                node[k] = value
            else:
                node = node.setdefault(k, {})
    return tree


def read_yaml(path: str | Path, what: str = "config file",
              top_level: str = "a mapping of sections (data:, model:, training:, ...)") -> dict:
    """A YAML mapping from ``path``; one line naming the file for a missing file, bad syntax or another top level
    (``what`` and ``top_level`` word those lines)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p}; pass a YAML file (see configs/ and recipes/)")
    try:
        tree = load_yaml(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{p}: not valid UTF-8 YAML ({first}); fix the syntax") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise UserError(f"{p}: the top level must be {top_level}")
    return tree


def _model_at(cls: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model class found by following ``path`` (field names; list indices skipped) from ``cls``."""
    for key in path:
        if isinstance(key, int):
            continue
        field = cls.model_fields.get(str(key))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *typing.get_args(ann)]
        candidates += [a for c in typing.get_args(ann) for a in typing.get_args(c)]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        cls = nxt
    return cls


def dotted(loc: tuple) -> str:
    """('teachers', 0, 'training', 'lr') -> 'teachers[0].training.lr'."""
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out


def format_validation_error(err: ValidationError, cls: type[BaseModel], source: str) -> str:
    """One line: the first problem, its full dotted key path, and what is allowed."""
    e = err.errors()[0]
    loc = tuple(x for x in e["loc"])
    if e["type"] == "extra_forbidden":
        parent = _model_at(cls, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        where = dotted(loc[:-1]) or "the top level"
        return f"{source}: unknown key '{dotted(loc)}'; allowed keys under {where}: {allowed}"
    got = e.get("input")
    got_s = f" (got {got!r})" if not isinstance(got, dict) and e["type"] != "value_error" else ""
    msg = e["msg"].removeprefix("Value error, ")
    where = f"key '{dotted(loc)}'" if loc else "the config"
    return f"{source}: {where}: {msg}{got_s}"


def resolve_data_root(cli_value: str | None, tree_value: str | None) -> str | None:
    return cli_value or os.environ.get("BABYLLAMA_DATA") or tree_value


def find_run_dir(config_path: str | Path | None) -> str | None:
    """The run directory (a folder holding plan.json) at or above a saved stage config, if any."""
    if not config_path:
        return None
    for d in Path(config_path).resolve().parents:
        if (d / PLAN_FILE).is_file():
            return str(d)
    return None


def _interpolate(obj: Any, values: dict[str, str | None], source: str) -> Any:
    if isinstance(obj, dict):
        return {k: _interpolate(v, values, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_interpolate(v, values, source) for v in obj]
    if isinstance(obj, str):
        for name, value in values.items():
            token = "${" + name + "}"
            if token in obj:
                if not value:
                    hint = ("pass --data-root DIR or set BABYLLAMA_DATA (e.g. ../shared/data), or download the data "
                            "with `babyllama data download`") if name == "data_root" else \
                        "pass --set run_dir=DIR (the run directory this stage belongs to)"
                    raise UserError(f"{source}: '{obj}' needs the {name.replace('_', ' ')}; {hint}")
                obj = obj.replace(token, value)
    return obj


def validate_tree(cls: type[BaseModel], tree: dict, source: str, data_root: str | None = None,
                  run_dir: str | None = None):
    data_root = resolve_data_root(data_root, tree.get("data_root") if isinstance(tree, dict) else None)
    if data_root and "data_root" in cls.model_fields:
        tree = {**tree, "data_root": data_root}
    if getattr(cls, "writes_run_dir", False):  # a recipe's run_dir is where it writes, never a placeholder
        run_dir = None
    else:
        run_dir = tree.get("run_dir") or run_dir
        if run_dir and "run_dir" in cls.model_fields:
            tree = {**tree, "run_dir": run_dir}
    tree = _interpolate(tree, {"data_root": data_root, "run_dir": run_dir}, source)
    try:
        return cls.model_validate(tree)
    except ValidationError as err:
        raise UserError(format_validation_error(err, cls, source)) from None


def load_config(path: str | Path | None, overrides: list[str] | None, data_root: str | None,
                cls: type[BaseModel]):
    """Read a YAML config (or start from defaults), apply ``key=value`` overrides, validate as ``cls``."""
    words = getattr(cls, "yaml_words", ())
    tree = read_yaml(path, *words) if path else {}
    apply_overrides(tree, overrides or [])
    return validate_tree(cls, tree, str(path) if path else "--set", data_root, run_dir=find_run_dir(path))


def yaml_value(value: Any) -> str:
    """``value`` as the one-line YAML text of an override (floats such as 1e-06 as 1.0e-06, which YAML 1.1 reads
    back as a number, not a string)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def overrides_from_tree(tree: dict) -> list[str]:
    """A mapping of keys to values (dotted keys or nested sections) as ``key=value`` overrides."""

    def flat(node: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in node.items():
            if isinstance(v, dict) and v:
                out += flat(v, f"{prefix}{k}.")
            else:
                out.append(f"{prefix}{k}={yaml_value(v)}")
        return out
    return flat(tree)


def overrides_from_file(path: str | Path) -> list[str]:
    """A YAML mapping of keys to values (dotted keys or nested sections) as ``key=value`` overrides."""
    return overrides_from_tree(read_yaml(path))


def location_free(obj: Any, run_dir: str | Path | None) -> Any:
    """``obj`` with every path inside ``run_dir`` written as ``${run_dir}/...`` (for files saved in a run)."""
    if not run_dir:
        return obj
    root = str(Path(run_dir).resolve())
    if isinstance(obj, dict):
        return {k: location_free(v, root) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [location_free(v, root) for v in obj]
    if isinstance(obj, str) and (obj == root or obj.startswith(root + "/")):
        return "${run_dir}" + obj[len(root):]
    return obj


def dump_yaml(cfg: BaseModel, run_dir: str | Path | None = None, exclude_unset: bool = False) -> str:
    """YAML of a config; with ``run_dir``, paths inside it as ``${run_dir}/...`` and no ``run_dir`` key."""
    tree = cfg.model_dump(mode="json", exclude_unset=exclude_unset)
    if run_dir:
        tree = location_free(tree, run_dir)
        tree["run_dir"] = None
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=None)


def describe(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf field of ``cls``: the config reference."""
    rows = []
    for name, f in cls.model_fields.items():
        sub = _model_at(cls, (name,))
        if sub is not None and f.default_factory is not None:
            rows += describe(sub, f"{prefix}{name}.")
        else:
            rows.append((prefix + name, repr(f.default), f.description or ""))
    return rows
