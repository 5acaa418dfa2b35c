"""A per-operation cost limit beside the depth, alias and token limits, and the paging arguments
checked before anything runs.

Depth and alias limits bound the shape of a query, not its work: 30 aliased multi-query searches
pass both and cost seconds of CPU. So every operation gets a cost before it runs, from its
document and its variables: each field with a weight below (the expensive ones) costs its weight,
a list or connection asked for N items (``first``/``last``, else its page size) multiplies the
cost of what is asked inside it by N and costs 1 itself. An operation above ``GRAPHQL_MAX_COST``
is refused before anything runs (BAD_USER_INPUT, ``extensions.cost`` and ``maxCost``).
"""

from typing import Iterator

from graphql.language import FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode
from graphql.utilities import value_from_ast_untyped

# Fields that do real work: retrieval, embedding, exports, ingestion, generation.
WEIGHTS = {
    "searchDocuments": 50,
    "exportMyData": 50,
    "importMyData": 50,
    "importChats": 20,
    "exportChat": 10,
    "regenerateMessage": 50,
    "uploadDocument": 20,
    "uploadDocuments": 50,
    "rebuildIndex": 50,
    "importRecipes": 20,
    "register": 20,  # password hashing
    "login": 20,
    "changePassword": 20,
    "resetPassword": 20,
    "claimGuestAccount": 20,
    "vectorStoreStats": 10,
    "usageStats": 10,
    "quotas": 5,
    "models": 2,
}
FAN_OUT = {"MULTI_QUERY": 4}  # a multi-query search embeds and searches up to four phrasings
DEFAULT_PAGE = 100  # a connection asked without first/last returns at most this many


def arguments(node: FieldNode, variables: dict) -> dict:
    values = {}
    for arg in node.arguments or ():
        try:
            values[arg.name.value] = value_from_ast_untyped(arg.value, variables)
        except Exception:  # noqa: BLE001 - a malformed value is validation's to report
            values[arg.name.value] = None
    return values


def _size(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def fields_of(selection_set, fragments: dict, seen: frozenset = frozenset()) -> Iterator[FieldNode]:
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from fields_of(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:  # a fragment cycle is validation's to report
                yield from fields_of(fragments[name].selection_set, fragments, seen | {name})


def cost_of(selection_set, fragments: dict, variables: dict) -> int:
    total = 0
    for node in fields_of(selection_set, fragments):
        args = arguments(node, variables)
        name = node.name.value
        weight = WEIGHTS.get(name, 0) * FAN_OUT.get(str(args.get("strategy") or "").upper(), 1)
        inner = cost_of(node.selection_set, fragments, variables) if node.selection_set else 0
        count = _size(args.get("first")) or _size(args.get("last"))
        if count or "edges" in {f.name.value for f in fields_of(node.selection_set, fragments)}:
            total += weight + 1 + (count or DEFAULT_PAGE) * inner
        else:
            total += weight + inner
    return total


def operation_cost(document, operation_name: str | None, variables: dict | None) -> int:
    fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    return max((cost_of(o.selection_set, fragments, variables or {}) for o in operations), default=0)


MAX_PAGE = 100  # strawberry's relay_max_results
MAX_OFFSET = 10**9  # no list here is longer; a larger cursor offset is not one of ours


def _cursor_ok(value) -> bool:
    from strawberry.relay.types import PREFIX
    from strawberry.relay.utils import from_base64

    try:
        kind, offset = from_base64(value)
        return kind == PREFIX and offset.isdigit() and int(offset) <= MAX_OFFSET
    except Exception:  # noqa: BLE001 - anything that does not decode is not a cursor of ours
        return False


def fields_with_arguments(document, variables) -> Iterator[tuple[FieldNode, dict]]:
    """Every field of the document's operations and fragments, with its argument values."""
    variables = variables if isinstance(variables, dict) else {}
    fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}
    stack = [d.selection_set for d in document.definitions if getattr(d, "selection_set", None)]
    while stack:
        for node in fields_of(stack.pop(), fragments):
            yield node, arguments(node, variables)
            if node.selection_set:
                stack.append(node.selection_set)


def paging_error(document, variables: dict | None) -> str | None:
    """The first bad paging argument (first/last out of 0..100, a cursor that is not ours), if any."""
    for _, args in fields_with_arguments(document, variables):
        for name in ("first", "last"):
            value = args.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_PAGE:
                return f"'{name}' must be between 0 and {MAX_PAGE}."
        for name in ("after", "before"):
            value = args.get(name)
            if isinstance(value, str) and not _cursor_ok(value):
                return f"'{name}' is not a cursor from this list."
    return None
