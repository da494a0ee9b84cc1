"""Values: read YAML files and --set overrides, fill schema defaults, validate, check rules.

The JSON Schema in ``schemas/values.schema.json`` is the single source of defaults and rules
that a schema can express; :func:`cross_field_errors` checks the rest.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from filesim import PROJECT_ROOT
from filesim.errors import BadInput
from filesim.model import Values, build
from filesim.quantity import to_bytes

SCHEMA_PATH = PROJECT_ROOT / "schemas" / "values.schema.json"
DEFAULT_VALUES = PROJECT_ROOT / "values" / "default.yaml"

QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+)?$")
#: ``key``, ``[0]`` (a position) or ``[nas-backup]`` (the entry of that name).
SET_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\[\]]+)\]")
SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
#: The smallest export and state a NAS can run with (an ext4 filesystem needs room of its own).
MIN_EXPORT = "16Mi"
MIN_STATE = "8Mi"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the values: where, what, and how to fix it."""

    path: str
    what: str
    fix: str
    #: The schema keyword that failed ("" for cross-field rules).
    kind: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.path}: {self.what}; {self.fix}"


class ValuesError(BadInput):
    """The values are invalid; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: Sequence[Problem]):
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem, prefixed with the source it came from."""
        return [f"{self.source}: {p}" for p in self.problems]


@cache
def schema() -> dict[str, Any]:
    """The values JSON Schema."""
    return json.loads(SCHEMA_PATH.read_text())


@cache
def validator() -> jsonschema.Draft202012Validator:
    """A validator for the values schema, built once."""
    return jsonschema.Draft202012Validator(schema())


def load(files: Iterable[str | Path] = (), sets: Iterable[str] = ()) -> Values:
    """Read, merge, default, validate and check values into typed Values.

    Raises ValuesError listing every problem found.
    """
    return build(load_dict(files, sets), target_defaults())


@cache
def target_defaults() -> dict[str, dict[str, Any]]:
    """Defaults that depend on the engine target, by key path: ``x-default-by-target``."""
    nas = schema()["$defs"]["nasServer"]["properties"]
    return {"nfs.allowedClients": nas["nfs"]["properties"]["allowedClients"]["x-default-by-target"]}


def from_dict(raw: dict[str, Any]) -> Values:
    """Typed values from an in-memory values dict (defaulted, validated, checked)."""
    return build(resolve(raw), target_defaults())


def load_dict(files: Iterable[str | Path] = (), sets: Iterable[str] = ()) -> dict[str, Any]:
    """Read, merge, default, validate and check values; the complete values dict."""
    files = [Path(f) for f in files] or [DEFAULT_VALUES]
    sets = list(sets)
    merged: dict[str, Any] = {}
    for path in files:
        merged = deep_merge(merged, read_yaml(path))
    for assignment in sets:
        apply_set(merged, assignment)
    source = str(files[-1]) if len(files) == 1 and not sets else "values"
    return resolve(merged, source)


def resolve(raw: dict[str, Any], source: str = "values") -> dict[str, Any]:
    """Turn raw merged values into complete, checked values."""
    # Defaults are valid by themselves (a test checks), so validating once after filling them
    # finds exactly the problems of the user's values.
    values = fill_defaults(apply_aliases(copy.deepcopy(raw)), schema())
    problems = schema_errors(values)
    # Cross-field rules run over the NAS entries the schema found sound, so one run reports all.
    # Only a wrong type, a missing key or an unknown choice stops the rules below (they read
    # the entry's keys and its role's defaults).
    broken = {p.path.split("]")[0] for p in problems
              if p.path.startswith("nasServers[") and p.kind in ("type", "required", "enum")}
    if not any(p.path in ("(top level)", "nasServers") for p in problems):
        problems += cross_field_errors(values, skip=broken)
    if problems:
        raise ValuesError(source, problems)
    return values


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one values file; a missing or malformed file is a ValuesError."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValuesError(str(path), [Problem("(file)", "not found", "check the path")]) from None
    except IsADirectoryError:
        raise ValuesError(str(path), [Problem("(file)", "is a folder, not a values file",
                                              "name a YAML file, e.g. values/default.yaml")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ValuesError(str(path), [Problem("(file)", f"cannot be read ({why})",
                                              "name a readable YAML file")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValuesError(str(path), [Problem(where, f"invalid YAML: {what}", "fix the syntax")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValuesError(
            str(path), [Problem("(top level)", "must be a mapping", "start with 'nasServers:'")]
        )
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge mappings recursively; the override wins.

    Lists of named mappings (``nasServers``) merge by ``name``, as Kubernetes' strategic merge
    does: an entry naming a known NAS changes its fields, a new name adds one (``enabled:
    false`` turns one off). Other lists are replaced whole, as Helm does.
    """
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        elif _named(value) and _named(result.get(key)):
            merged = [copy.deepcopy(item) for item in result[key]]
            position = {item["name"]: i for i, item in enumerate(merged)}
            for item in value:
                if item["name"] in position:
                    merged[position[item["name"]]] = deep_merge(merged[position[item["name"]]], item)
                else:
                    position[item["name"]] = len(merged)
                    merged.append(copy.deepcopy(item))
            result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def _named(value: Any) -> bool:
    """A non-empty list of mappings that all carry a string ``name``."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in value))


def apply_set(values: dict[str, Any], assignment: str) -> None:
    """Apply one Helm-style ``a.b[0].c=value`` override in place (value parsed as YAML)."""
    key, sep, text = assignment.partition("=")
    tokens = [(name, (int(index) if index.isdigit() else index) if index else None)
              for name, index in SET_TOKEN.findall(key)]
    if not sep or not tokens or "".join(_render(tokens)) != key:
        raise ValuesError(
            "--set",
            [Problem(assignment, "not of the form key.path[0].name=value",
                     "e.g. nasServers[0].sync.interval=5")],
        )
    value = yaml.safe_load(text) if text else ""
    if isinstance(value, str) and SCIENTIFIC.match(value):
        value = float(value)  # YAML 1.1 reads 1e308 as text; on the command line it is a number
    node: Any = values
    for position, (name, index) in enumerate(tokens):
        last = position == len(tokens) - 1
        if isinstance(index, str):  # [name]: the entry of that name, added if there is none
            if not isinstance(node, list):
                _bad_set(assignment)
            found = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == index]
            if not found:
                node.append({"name": index})
            index = found[0] if found else len(node) - 1
        key: Any = index if index is not None else name
        if index is None and not isinstance(node, dict):
            _bad_set(assignment)
        if index is not None and (not isinstance(node, list) or index > len(node)):
            _bad_set(assignment, f"index {index} is past the end of the list"
                     if isinstance(node, list) else "path does not match the values' structure")
        if last:
            if isinstance(node, list) and index == len(node):
                node.append(value)
            else:
                node[key] = value
            return
        following_is_index = tokens[position + 1][1] is not None
        if isinstance(node, list) and index == len(node):
            node.append([] if following_is_index else {})
        elif isinstance(node, dict) and key not in node:
            node[key] = [] if following_is_index else {}
        node = node[key]


def _render(tokens: list[tuple[str, int | str | None]]) -> list[str]:
    out = []
    for name, index in tokens:
        out.append(f"[{index}]" if index is not None else ("." if out else "") + name)
    return out


def _bad_set(assignment: str, what: str = "path does not match the values' structure") -> Any:
    raise ValuesError("--set", [Problem(assignment, what, "check the key path against values/default.yaml")])


def apply_aliases(values: dict[str, Any]) -> dict[str, Any]:
    """Map the research's ``sidecar.syncInterval`` onto ``sync.interval``."""
    servers = values.get("nasServers")
    for nas in servers if isinstance(servers, list) else []:
        sidecar = nas.get("sidecar") if isinstance(nas, dict) else None
        if isinstance(sidecar, dict) and "syncInterval" in sidecar:
            sync = nas.setdefault("sync", {})
            if isinstance(sync, dict):
                sync.setdefault("interval", sidecar["syncInterval"])
    return values


def fill_defaults(instance: Any, node: dict[str, Any], root: dict[str, Any] | None = None,
                  role: str | None = None) -> Any:
    """Return ``instance`` with every absent key that has a schema default filled in."""
    root = root or node
    if "$ref" in node:
        target = _deref(root, node["$ref"])
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if isinstance(instance, list) and "items" in node:
        return [fill_defaults(item, node["items"], root, role) for item in instance]
    if not isinstance(instance, dict) or "properties" not in node:
        return instance
    result = dict(instance)
    properties = node["properties"]
    if "role" in properties and "role" not in result:
        derived = _role_from_name(result.get("name", ""), properties["role"])
        if derived:
            result["role"] = derived
    role = result.get("role", role)
    for key, sub in properties.items():
        if key not in result:
            sub_node = _deref(root, sub["$ref"]) | sub if "$ref" in sub else sub
            if "default" in sub_node:
                result[key] = copy.deepcopy(sub_node["default"])
            elif role and role in sub_node.get("x-default-by-role", {}):
                result[key] = sub_node["x-default-by-role"][role]
            elif "x-default-from" in sub_node:  # one per so many bytes of a sibling quantity
                source = sub_node["x-default-from"]
                with contextlib.suppress(ValueError, TypeError):  # a bad quantity is named later
                    result[key] = max(to_bytes(str(result[source["key"]])) // source["bytesPer"],
                                      sub_node.get("minimum", 0))
        if key in result:
            result[key] = fill_defaults(result[key], sub, root, role)
    return result


def _deref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _role_from_name(name: str, role_schema: dict[str, Any]) -> str | None:
    for pattern, role in role_schema.get("x-role-from-name", {}).items():
        if isinstance(name, str) and re.match(pattern, name):
            return role
    return None


def schema_errors(values: dict[str, Any]) -> list[Problem]:
    """Problems the JSON Schema finds, one per error, in document order."""
    errors = sorted(validator().iter_errors(values), key=lambda e: [str(p) for p in e.absolute_path])
    return [_problem(error) for error in errors]


def key_path(parts: Iterable[Any]) -> str:
    """Render a path such as ``nasServers[0].sync.mode``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _problem(error: jsonschema.ValidationError) -> Problem:
    problem = _describe(error)
    return Problem(problem.path, problem.what, problem.fix, kind=str(error.validator))


def _describe(error: jsonschema.ValidationError) -> Problem:
    path = key_path(error.absolute_path)
    kind, arg, value = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        extra = sorted(set(value) - set(error.schema.get("properties", {})))
        return Problem(key_path([*error.absolute_path, extra[0]]) if extra else path,
                       f"unknown key {', '.join(map(repr, extra))}",
                       f"remove it or use one of: {allowed}")
    if kind == "required":
        missing = error.message.split("'")[1]
        hint = error.schema.get("properties", {}).get(missing, {}).get("description", "")
        return Problem(key_path([*error.absolute_path, missing]), "is required",
                       f"add it{': ' + hint if hint else ''}")
    if kind == "enum":
        return Problem(path, f"{value!r} is not allowed", f"use one of: {', '.join(map(str, arg))}")
    if kind == "type":
        kinds = arg if isinstance(arg, list) else [arg]
        wanted = " or ".join(f"{'an' if k[0] in 'aeiou' else 'a'} {k}" for k in kinds)
        return Problem(path, f"{value!r} is not of type {' or '.join(kinds)}", f"write {wanted} here")
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        relation = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=",
                    "exclusiveMaximum": "<"}[kind]
        return Problem(path, f"{value!r} is out of range", f"use a value {relation} {arg}")
    if kind == "minItems":
        return Problem(path, "is empty", f"give at least {arg} item(s)")
    if kind == "uniqueItems":
        return Problem(path, "has duplicate items", "list each item once")
    if kind in ("minLength", "pattern", "maxLength"):
        hint = error.schema.get("x-hint")
        if hint:
            return Problem(path, f"{value!r} is not valid", f"use {hint}")
        return Problem(path, f"{value!r} is not valid", f"match {arg!r}" if kind == "pattern" else
                       "give a non-empty string" if kind == "minLength" else f"use at most {arg} characters")
    return Problem(path, error.message, "see schemas/values.schema.json")


def cross_field_errors(values: dict[str, Any], skip: Iterable[str] = ()) -> list[Problem]:
    """Rules the schema cannot express, over defaulted, schema-valid NAS entries.

    ``skip`` names entries (``nasServers[i``) that failed the schema.
    """
    problems: list[Problem] = []
    seen: dict[tuple[str, Any], str] = {}

    def unique(kind: str, value: Any, path: str, fix: str) -> None:
        if value is None:
            return
        if (kind, value) in seen:
            problems.append(Problem(path, f"{kind} {value!r} is also used by {seen[kind, value]}", fix))
        else:
            seen[kind, value] = path

    skip = set(skip)
    if not any(nas.get("enabled", True) for nas in values["nasServers"]):
        problems.append(Problem("nasServers", "every NAS is disabled",
                                "leave at least one NAS enabled (enabled: true)"))
    prefix = values["namePrefix"]
    for i, nas in enumerate(values["nasServers"]):
        at = f"nasServers[{i}]"
        if f"nasServers[{i}" in skip:
            continue
        name = nas["name"]
        if len(prefix + name) > 63:
            problems.append(Problem(f"{at}.name", f"namePrefix + name {prefix + name!r} is longer than "
                                    "63 characters", "shorten the name or namePrefix"))
        unique("name", name, f"{at}.name", "give every NAS a unique name")
        if "role" not in nas:
            problems.append(Problem(f"{at}.role", f"cannot be derived from the name {name!r}",
                                    "set role: input, output or backup"))
            continue
        _check_sync(nas, at, problems)
        _check_network(nas, at, problems, unique)
        for where, quantity in _quantities(nas, at):
            if not QUANTITY.match(str(quantity)):
                problems.append(Problem(where, f"{quantity!r} is not a Kubernetes quantity",
                                        "write e.g. 500Mi, 1Gi, 250m or 0.5"))
            elif where.endswith(("storage.sizeLimit", "storage.stateSizeLimit")):
                least = MIN_STATE if where.endswith("stateSizeLimit") else MIN_EXPORT
                if to_bytes(str(quantity)) < to_bytes(least):
                    problems.append(Problem(where, f"{quantity!r} is too small for a filesystem",
                                            f"give at least {least}"))
        storage = nas["storage"]
        size = to_bytes(str(storage["sizeLimit"])) if QUANTITY.match(str(storage["sizeLimit"])) else 0
        if size >= to_bytes(MIN_EXPORT) and storage.get("maxFiles", 0) * 1024 > size:
            problems.append(Problem(f"{at}.storage.maxFiles", f"{storage['maxFiles']} files do not "
                                    f"fit {storage['sizeLimit']} (at most one per KiB)",
                                    "raise storage.sizeLimit or lower storage.maxFiles"))
    return problems


def _check_sync(nas: dict[str, Any], at: str, problems: list[Problem]) -> None:
    role, access, sync = nas["role"], nas["access"], nas["sync"]
    mode = sync["mode"]
    alias = nas["sidecar"].get("syncInterval")
    if alias is not None and alias != sync["interval"]:
        problems.append(Problem(f"{at}.sidecar.syncInterval",
                                f"{alias} contradicts sync.interval {sync['interval']}",
                                "set only sync.interval"))
    if access == "ro" and mode != "to-nfs":
        problems.append(Problem(f"{at}.sync.mode", f"{mode!r} needs NFS writes but access is 'ro'",
                                "set access: rw, or sync.mode: to-nfs"))
    if access == "rw" and mode == "to-nfs":
        problems.append(Problem(f"{at}.sync.mode",
                                "'to-nfs' mirrors Windows over the export, so NFS clients' writes "
                                "would be lost", "set access: ro, or sync.mode: bidirectional"))
    if role in ("output", "backup") and access == "ro":
        problems.append(Problem(f"{at}.access", f"a {role} NAS must accept writes",
                                "set access: rw, or role: input"))


def _check_network(nas: dict[str, Any], at: str, problems: list[Problem], unique: Any) -> None:
    service, nfs = nas["service"], nas["nfs"]
    try:
        address = ipaddress.ip_address(service["clusterIP"])
        unique("clusterIP", str(address), f"{at}.service.clusterIP", "give every NAS its own ClusterIP")
    except ValueError:
        problems.append(Problem(f"{at}.service.clusterIP", f"{service['clusterIP']!r} is not an IP address",
                                "use an address in the cluster's service range, e.g. 10.96.100.11"))
    if "nodePort" in service:
        if service["type"] != "NodePort":
            problems.append(Problem(f"{at}.service.nodePort", "is set but service.type is not NodePort",
                                    "set service.type: NodePort, or remove nodePort"))
        unique("nodePort", service["nodePort"], f"{at}.service.nodePort", "give every NAS its own nodePort")
    if "3" in nfs["versions"] and nfs["mountPort"] == nfs["port"]:
        problems.append(Problem(f"{at}.nfs.mountPort", "equals nfs.port", "use a different port"))
    unique("podman port", nas["podman"]["port"], f"{at}.podman.port",
           "give every NAS its own podman.port")
    for j, cidr in enumerate(nfs.get("allowedClients", [])):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.append(Problem(f"{at}.nfs.allowedClients[{j}]", f"{cidr!r} is not a CIDR",
                                    "write e.g. 10.0.0.0/8 or 192.168.49.2/32"))


def _quantities(nas: dict[str, Any], at: str) -> Iterable[tuple[str, Any]]:
    for key in ("sizeLimit", "stateSizeLimit"):
        yield f"{at}.storage.{key}", nas["storage"][key]
    yield f"{at}.versions.maxSize", nas["versions"]["maxSize"]
    for owner in ("sidecar", "seed", "nfs"):
        for kind, amounts in nas[owner]["resources"].items():
            for resource, quantity in amounts.items():
                yield f"{at}.{owner}.resources.{kind}.{resource}", quantity
