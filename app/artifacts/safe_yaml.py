"""YAML for artifact files: `yaml.SafeLoader` plus bounds on size, nesting depth and alias expansion.

`safe_load` builds no Python objects beyond plain data, but two shapes of a tiny file still take a
process down. Nesting: PyYAML composes nodes recursively, so a policy nested ~500 deep (under 1 kB)
raises `RecursionError` out of the loader, and whatever walks a deep result (pydantic, orjson, a
diff) fails the same way; composition here counts its depth and stops at `MAX_DEPTH`, long before
the interpreter's recursion limit. Aliases: a "billion laughs" file of a few hundred bytes (each
anchor referring nine times to the previous one) composes into a graph whose expansion has billions
of nodes; the composed graph is measured as a tree (size and depth, aliases expanded, without
recursion) before any of it is constructed, and refused past `MAX_NODES` or `MAX_DEPTH`.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_YAML_BYTES", "YamlTooDeep", "YamlTooLarge", "load_bounded_yaml"]

MAX_YAML_BYTES = 1024 * 1024
MAX_NODES = 100_000  # a full policy file has a few hundred
MAX_DEPTH = 32  # a policy nests 5 deep (overrides[i].when.<key>); JSON artifacts share the bound


class YamlTooLarge(yaml.YAMLError):
    """A YAML document beyond the bounds: bytes, nodes with aliases expanded, or nesting depth."""


class YamlTooDeep(YamlTooLarge):
    """A YAML document nested deeper than `MAX_DEPTH` (directly or through aliases)."""


def _too_deep() -> YamlTooDeep:
    return YamlTooDeep(
        f"the document nests deeper than {MAX_DEPTH} levels (aliases expanded); an artifact file is a few"
        " levels deep: flatten it"
    )


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # The composer recurses once per level: count the levels and stop well before the interpreter does.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _too_deep()
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        expanded, depth = _expanded_shape(node)
        if expanded > MAX_NODES:
            raise YamlTooLarge(
                f"the document expands to more than {MAX_NODES} nodes (aliases counted at every use);"
                " an alias bomb? write the values out instead of anchors and aliases"
            )
        if depth > MAX_DEPTH:
            raise _too_deep()
        return super().construct_document(node)


def _expanded_shape(root: yaml.Node) -> tuple[int, int]:
    """(nodes, depth) of the document with every alias expanded, computed without expanding or recursing
    (memoised per node; both capped just past their bound)."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
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
            depths[key] = min(MAX_DEPTH + 1, 1 + max((depths[id(child)] for child in children), default=0))
            continue
        if key in on_path:  # a recursive alias: infinite when expanded
            return MAX_NODES + 1, MAX_DEPTH + 1
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)], depths[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_bounded_yaml(text: str) -> Any:
    """`yaml.safe_load(text)`, refusing documents over `MAX_YAML_BYTES`, `MAX_NODES` expanded nodes or
    `MAX_DEPTH` levels (raises `YamlTooLarge`/`YamlTooDeep`, never `RecursionError`)."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise YamlTooLarge(f"the file is larger than {MAX_YAML_BYTES} bytes; a policy file has a few kB")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # e.g. a long chain of `<<` merge keys; the bounds above should come first
        raise _too_deep() from None
