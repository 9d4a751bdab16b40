"""YAML for artifact files: `yaml.SafeLoader` plus bounds on size and on alias expansion.

`safe_load` builds no Python objects beyond plain data, but it still expands aliases: a "billion
laughs" file of a few hundred bytes (each anchor referring nine times to the previous one) composes
into a graph whose expansion has billions of nodes, and whatever walks it (pydantic validation, a
diff, a log line) hangs the process. The composed graph is measured as a tree before any of it is
constructed; past `MAX_NODES` the file is refused.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_NODES", "MAX_YAML_BYTES", "YamlTooLarge", "load_bounded_yaml"]

MAX_YAML_BYTES = 1024 * 1024
MAX_NODES = 100_000  # a full policy file has a few hundred


class YamlTooLarge(yaml.YAMLError):
    """A YAML document bigger than the bounds, bytes or nodes with aliases expanded."""


class _BoundedLoader(yaml.SafeLoader):
    def construct_document(self, node: yaml.Node) -> Any:
        expanded = _expanded_size(node)
        if expanded > MAX_NODES:
            raise YamlTooLarge(
                f"the document expands to more than {MAX_NODES} nodes (aliases counted at every use);"
                " an alias bomb? write the values out instead of anchors and aliases"
            )
        return super().construct_document(node)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of the document with every alias expanded, counted without expanding (memoised per node)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = min(MAX_NODES + 1, 1 + sum(sizes[id(child)] for child in children))
            continue
        if key in on_path:  # a recursive alias: infinite when expanded
            return MAX_NODES + 1
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_bounded_yaml(text: str) -> Any:
    """`yaml.safe_load(text)`, refusing documents over `MAX_YAML_BYTES` or `MAX_NODES` expanded nodes."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise YamlTooLarge(f"the file is larger than {MAX_YAML_BYTES} bytes; a policy file has a few kB")
    return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
