"""The one mechanism that scopes objects to who may see them.

Every model type derives from ``ScopedNode``; its ``get_queryset`` narrows lists, connections and
node lookups (global IDs included) with the model's ``visible_q(user)``, the same rule the
services apply through ``Model.objects.visible_to(user)``. No resolver filters by owner by hand.
"""

import strawberry
from django.db import models
from strawberry import relay
from strawberry_django.pagination import get_cached_total_count, get_total_count
from strawberry_django.relay import DjangoListConnection
from strawberry_django.relay.utils import resolve_model_node, resolve_model_nodes
from strawberry_django.resolvers import django_resolver

from backend.core.errors import BadUserInput, NotFound
from backend.core.scoping import scope

MAX_PK = 2**63 - 1  # the largest key a database here stores


def valid_pk(value) -> bool:
    """Whether the node id of a global ID can be one of our primary keys (a positive integer)."""
    text = str(value)
    return text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) <= MAX_PK


class ScopedNode(relay.Node):
    # The node id is the model's primary key. Said once here: without it, strawberry-django finds
    # "pk" by scanning every annotation of the type's classes (evaluating each) and failing, for
    # every id of every object in every response (a search's five ids were a tenth of its
    # event-loop time, cProfile).
    _id_attr = "pk"

    @classmethod
    def get_queryset(cls, queryset, info, **kwargs):
        return scope(queryset, info.context.get_user(required=False))

    # A global ID whose node id cannot be a key of ours ("Document:abc", a 5000-digit number) is
    # no object: ``node`` answers null, as for any id you may not see; the database is not asked.
    @classmethod
    def resolve_node(cls, node_id, *, info, required=False):
        if not valid_pk(node_id):
            if required:
                raise NotFound()
            return None
        return django_resolver(resolve_model_node)(cls, node_id, info=info, required=required)

    @classmethod
    def resolve_nodes(cls, *, info, node_ids, required=False):
        node_ids = [str(i) for i in node_ids]
        if not all(valid_pk(i) for i in node_ids):
            raise BadUserInput("Malformed ID.")
        return django_resolver(resolve_model_nodes)(cls, info=info, node_ids=node_ids, required=required)


def decode_id(global_id, expected_type: str | None = None):
    """The primary key inside a global ID (or a raw id), checked against the expected type: an id
    of another type is NOT_FOUND, one that cannot be a key of ours BAD_USER_INPUT."""
    if not isinstance(global_id, relay.GlobalID):
        try:
            global_id = relay.GlobalID.from_id(str(global_id))
        except Exception:
            raise BadUserInput("Malformed ID.")
    if expected_type and global_id.type_name != expected_type:
        raise NotFound()
    if not valid_pk(global_id.node_id):
        raise BadUserInput("Malformed ID.")
    return int(global_id.node_id)


@strawberry.type(description="The object that was deleted.")
class Deleted:
    id: relay.GlobalID


@strawberry.type(name="Connection", description="A page of a list, and the size of the whole list.")
class Connection(DjangoListConnection[relay.NodeType]):
    @strawberry.field(description="How many items the whole list holds, over all its pages.")
    def total_count(self) -> int:
        try:  # the window function strawberry-django adds when totalCount is selected
            return self.edges[0].node._strawberry_total_count
        except (IndexError, AttributeError):
            pass
        if isinstance(self.nodes, models.QuerySet):
            cached = get_cached_total_count(self.nodes)
            return cached if cached is not None else django_resolver(get_total_count)(self.nodes)
        return len(self.nodes)
