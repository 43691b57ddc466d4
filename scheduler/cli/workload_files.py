"""Workload files for ``valley submit``: YAML or JSON with the API's field names, read into
``WorkloadSpec`` messages; every error names the file and the line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from scheduler._proto.valley.v1 import placement_pb2 as pb


class WorkloadFileError(click.ClickException):
    """What is wrong with a workload file, as ``PATH:LINE: message``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass
class WorkloadFile:
    """The specs of a file, its request_id if it names one, and the line of every field."""

    path: str
    specs: list[pb.WorkloadSpec]
    request_id: str = ""
    lines: dict[str, int] = field(default_factory=dict)  # field path -> line

    def line_of(self, field_path: str) -> int | None:
        """The line of the longest known prefix of ``field_path``."""
        p = field_path
        while p:
            if p in self.lines:
                return self.lines[p]
            cut = max(p.rfind("."), p.rfind("["))
            if cut <= 0:
                break
            p = p[:cut]
        return None


_ENUMS = {"kind": "WORKLOAD_KIND_", "topology": "TOPOLOGY_"}


def load_workload_file(path: str) -> WorkloadFile:
    """Read workload specs from a YAML or JSON file: a list of specs, one spec, or a mapping
    with ``workloads`` (and optionally ``request_id``). Errors name the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise WorkloadFileError(path, None, f"cannot read: {e}") from None
    if path.endswith(".json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise WorkloadFileError(
                path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})"
            ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None:
            problem += f" ({context} started on line {cmark.line + 1})"
        line = mark.line + 1 if mark else None
        raise WorkloadFileError(path, line, f"invalid YAML: {problem}") from None
    if root is None:
        raise WorkloadFileError(path, None, "empty file: expected a list of workload specs")
    return _FileReader(path).read(root)


class _FileReader:
    """Walks the YAML node tree (not the loaded values) so every field keeps its line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[str, int] = {}
        self._constructor = yaml.SafeLoader("")

    def fail(self, node: Any, message: str) -> WorkloadFileError:
        return WorkloadFileError(self.path, node.start_mark.line + 1, message)

    def scalar(self, node: Any, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"{where}: expected a single value")
        return self._constructor.construct_object(node, deep=True)

    def read(self, root: Any) -> WorkloadFile:
        request_id = ""
        items = root
        if isinstance(root, yaml.MappingNode):
            keys = {self.scalar(k, "key"): (k, v) for k, v in root.value}
            if "workloads" in keys:
                for k in keys:
                    if k not in ("workloads", "request_id"):
                        raise self.fail(
                            keys[k][0], f"unknown key {k!r} (expected workloads, request_id)"
                        )
                items = keys["workloads"][1]
                if "request_id" in keys:
                    request_id = str(self.scalar(keys["request_id"][1], "request_id"))
            else:
                items = yaml.SequenceNode(
                    tag="tag:yaml.org,2002:seq",
                    value=[root],
                    start_mark=root.start_mark,
                    end_mark=root.end_mark,
                )
        if not isinstance(items, yaml.SequenceNode):
            raise self.fail(items, "expected a list of workload specs")
        specs = [self.spec(node, f"workloads[{i}]") for i, node in enumerate(items.value)]
        if not specs:
            raise self.fail(items, "no workloads in the file")
        return WorkloadFile(self.path, specs, request_id, self.lines)

    def spec(self, node: Any, where: str) -> pb.WorkloadSpec:

        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{where}: expected a mapping of spec fields")
        self.lines[where] = node.start_mark.line + 1
        spec = pb.WorkloadSpec()
        fields = pb.WorkloadSpec.DESCRIPTOR.fields_by_name
        for key_node, value in node.value:
            key = self.scalar(key_node, where)
            path = f"{where}.{key}"
            self.lines[path] = key_node.start_mark.line + 1
            if key not in fields:
                raise self.fail(key_node, f"{path}: unknown field (known: {', '.join(fields)})")
            if key == "resources":
                self.resources(value, path, spec.resources)
            elif key == "deadline":
                self.deadline(value, path, spec.deadline)
            elif key == "labels":
                if not isinstance(value, yaml.MappingNode):
                    raise self.fail(value, f"{path}: expected a mapping of label -> value")
                for k, v in value.value:
                    spec.labels[str(self.scalar(k, path))] = self.text(
                        v, f"{path}.{self.scalar(k, path)}"
                    )
            elif key in ("allowed_sites", "gpu_models"):
                entries = value.value if isinstance(value, yaml.SequenceNode) else [value]
                getattr(spec, key).extend(
                    self.text(v, f"{path}[{i}]") for i, v in enumerate(entries)
                )
            elif key in _ENUMS:
                setattr(spec, key, self.enum(value, path, key))
            elif key == "max_latency_ms":
                v = self.scalar(value, path)
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise self.fail(value, f"{path}: expected a number (got {v!r})")
                spec.max_latency_ms = float(v)
            elif key in ("tenant", "name", "origin"):
                setattr(spec, key, self.text(value, path))
            else:
                setattr(spec, key, self.integer(value, path, 64 if key == "duration_s" else 32))
        return spec

    def text(self, node: Any, where: str) -> str:
        v = self.scalar(node, where)
        if not isinstance(v, str):
            raise self.fail(node, f"{where}: expected text (got {v!r}; quote it)")
        return v

    def integer(self, node: Any, where: str, bits: int) -> int:
        v = self.scalar(node, where)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(node, f"{where}: expected a whole number (got {v!r})")
        limit = 2 ** (bits - 1)
        if not -limit <= v < limit:
            raise self.fail(node, f"{where}: {v} is out of range for a {bits}-bit integer")
        return v

    def resources(self, node: Any, where: str, out: Any) -> None:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(
                node, f"{where}: expected a mapping (cpu_millis, memory_mib, gpus, gpu_millis)"
            )
        bits = {"cpu_millis": 64, "memory_mib": 64, "gpus": 32, "gpu_millis": 32}
        for k, v in node.value:
            key = self.scalar(k, where)
            path = f"{where}.{key}"
            self.lines[path] = k.start_mark.line + 1
            if key not in bits:
                raise self.fail(k, f"{path}: unknown field (known: {', '.join(bits)})")
            setattr(out, key, self.integer(v, path, bits[key]))

    def enum(self, node: Any, where: str, key: str) -> int:

        enum = pb.WorkloadKind if key == "kind" else pb.Topology
        v = self.scalar(node, where)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        name = str(v).upper()
        prefix = _ENUMS[key]
        full = name if name.startswith(prefix) else prefix + name
        try:
            return int(enum.Value(full))
        except ValueError:
            known = ", ".join(
                d.name.removeprefix(prefix).lower()
                for d in enum.DESCRIPTOR.values
                if not d.name.endswith("UNSPECIFIED")
            )
            raise self.fail(node, f"{where}: unknown value {v!r} (known: {known})") from None

    def deadline(self, node: Any, where: str, out: Any) -> None:
        v = self.scalar(node, where)
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                raise self.fail(
                    node, f"{where}: expected an RFC 3339 time such as 2025-07-01T12:00:00+08:00"
                ) from None
        if isinstance(v, date) and not isinstance(v, datetime):
            v = datetime(v.year, v.month, v.day, tzinfo=UTC)
        if not isinstance(v, datetime):
            raise self.fail(node, f"{where}: expected a time (got {v!r})")
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        out.FromDatetime(v.astimezone(UTC))
