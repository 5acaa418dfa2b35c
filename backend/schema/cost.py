"""A per-operation cost limit, beside the depth, alias and token limits.

Depth and alias limits bound the shape of a query, not its work: 30 aliased multi-query searches
pass both and cost seconds of CPU. So every operation gets a cost before it runs, from its
document and its variables: each field with a weight below (the expensive ones) costs its weight,
a list or connection asked for N items (``first``/``last``, else its page size) multiplies the
cost of what is asked inside it by N and costs 1 itself. An operation above ``GRAPHQL_MAX_COST``
is refused before anything runs (BAD_USER_INPUT, ``extensions.cost`` and ``maxCost``).
"""

from typing import Iterator

from django.conf import settings
from graphql import GraphQLError
from graphql.language import FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode
from graphql.utilities import value_from_ast_untyped
from strawberry.extensions import SchemaExtension

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


def _args(node: FieldNode, variables: dict) -> dict:
    values = {}
    for arg in node.arguments or ():
        try:
            values[arg.name.value] = value_from_ast_untyped(arg.value, variables)
        except Exception:  # noqa: BLE001 - a malformed value is validation's to report
            values[arg.name.value] = None
    return values


def _size(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _fields(selection_set, fragments: dict, seen: frozenset = frozenset()) -> Iterator[FieldNode]:
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:  # a fragment cycle is validation's to report
                yield from _fields(fragments[name].selection_set, fragments, seen | {name})


def cost_of(selection_set, fragments: dict, variables: dict) -> int:
    total = 0
    for node in _fields(selection_set, fragments):
        args = _args(node, variables)
        name = node.name.value
        weight = WEIGHTS.get(name, 0) * FAN_OUT.get(str(args.get("strategy") or "").upper(), 1)
        inner = cost_of(node.selection_set, fragments, variables) if node.selection_set else 0
        count = _size(args.get("first")) or _size(args.get("last"))
        if count or "edges" in {f.name.value for f in _fields(node.selection_set, fragments)}:
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


class CostLimit(SchemaExtension):
    """Refuses an operation whose cost is above ``GRAPHQL_MAX_COST``, before validation and execution."""

    def on_validate(self):
        context = self.execution_context
        if context.graphql_document is not None:
            cost = operation_cost(context.graphql_document, context.operation_name, context.variables)
            limit = settings.GRAPHQL_MAX_COST
            if cost > limit:
                context.pre_execution_errors = [GraphQLError(
                    f"This operation costs {cost}, more than the {limit} allowed: ask for fewer items or "
                    "split it into several requests.",
                    extensions={"code": "BAD_USER_INPUT", "cost": cost, "maxCost": limit})]
        yield
