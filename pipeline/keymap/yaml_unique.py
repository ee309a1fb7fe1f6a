"""YAML without silent duplicates: the keymap's parser.

Plain YAML keeps the last value of a key written twice in one mapping, silently: a repeated `min_age_days`
changes the cadence without a word, and a repeated `dataset` makes the entry another dataset, which a later check
then blames on the wrong entry. `load_yaml` refuses such a document, naming the key and both lines.
"""

from __future__ import annotations

from typing import Any

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, except that a mapping that names a key twice is an error (see the module docstring)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges; an explicit key may override it
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise DuplicateKey(f"line {line}: duplicate key {key!r} (first set on line {first_line[key]})")
            except TypeError:  # an unhashable key: the base class reports it
                continue
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


class DuplicateKey(ValueError):
    """A mapping of the keymap file names the same key twice."""


def load_yaml(text: str) -> Any:
    """The document in `text`, parsed as `yaml.safe_load` does; raises DuplicateKey or yaml.YAMLError."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
