"""Text a client may send: valid Unicode without NUL (PostgreSQL cannot store NUL, nothing can
store a lone surrogate), and search patterns short enough to give to LIKE."""

import re

import strawberry
from graphql import visit
from graphql.language import StringValueNode, Visitor

from .cost import fields_with_arguments

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
PATTERN_ARGUMENTS = ("titleContains", "search", "text")  # filters that become LIKE patterns
MAX_PATTERN = 500


def _strings(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class _Literals(Visitor):
    def __init__(self):
        super().__init__()
        self.found = []

    def enter_string_value(self, node: StringValueNode, *args):
        self.found.append(node.value)


def text_error(document, variables) -> str | None:
    """Why the operation's text cannot be taken (a NUL or a lone surrogate anywhere, in its
    variables or its literals; a search pattern too long), or None."""
    literals = _Literals()
    visit(document, literals)
    for text in (*literals.found, *_strings(variables)):
        if UNSTORABLE.search(text):
            return "Text must be valid Unicode without NUL characters."
    for _, args in fields_with_arguments(document, variables):
        for name in PATTERN_ARGUMENTS:
            if isinstance(args.get(name), str) and len(args[name]) > MAX_PATTERN:
                return f"'{name}' is longer than {MAX_PATTERN} characters."
    return None


def _file(value):
    """An Upload variable is a file of the multipart request, never a string or a number."""
    if not (hasattr(value, "read") and hasattr(value, "name") and hasattr(value, "size")):
        raise ValueError("Expected a file sent by the GraphQL multipart request spec.")
    return value


UPLOAD = strawberry.scalar(name="Upload", parse_value=_file, serialize=lambda value: None,
                           description="A file sent by the GraphQL multipart request spec.")
