"""Stripe's bracket notation: `a[b][0][c]=v` pairs -> a tree of dicts with string leaves.

Lists stay dicts keyed "0", "1", ... here (`x[]=` appends the next index): only the request
schema knows whether `metadata[0]` is a map key or a list index, so params.py decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from .errors import StripeApiError, invalid

Tree = dict[str, "Tree | str"]

_KEY: Final = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART: Final = re.compile(r"\[([^\[\]]*)\]")
MAX_PARAMS: Final = 1000
MAX_DEPTH: Final = 8


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> Tree:
    """Build the tree from already percent-decoded (key, value) pairs, refusing ambiguity."""
    tree: Tree = {}
    for count, (key, value) in enumerate(pairs, start=1):
        if count > MAX_PARAMS:
            raise invalid(f"Too many parameters: at most {MAX_PARAMS} are accepted")
        _insert(tree, key, value)
    return tree


def _insert(tree: Tree, key: str, value: str) -> None:
    match = _KEY.match(key)
    if match is None:
        raise invalid(f"Invalid parameter name: {key!r}", param=key)
    path = [match.group(1), *_PART.findall(match.group(2))]
    if len(path) > MAX_DEPTH:
        raise invalid(f"Parameter nested too deeply: {key}", param=key)
    node = tree
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if part == "":
            part = str(len(node))  # `x[]=` appends
        existing = node.get(part)
        if last:
            if existing is not None:
                raise _conflict(key)
            node[part] = value
        elif existing is None:
            child: Tree = {}
            node[part] = child
            node = child
        elif isinstance(existing, dict):
            node = existing
        else:
            raise _conflict(key)


def _conflict(key: str) -> StripeApiError:
    return invalid(f"Received the parameter {key} more than once, or as both a value and a hash")
