"""The one mechanism that scopes objects to who may see them.

Every model type derives from ``ScopedNode``; its ``get_queryset`` narrows lists, connections and
node lookups (global IDs included) with the model's ``visible_q(user)``, the same rule the
services apply through ``Model.objects.visible_to(user)``. No resolver filters by owner by hand.
"""

import strawberry
from strawberry import relay

from backend.core.scoping import scope


class ScopedNode(relay.Node):
    @classmethod
    def get_queryset(cls, queryset, info, **kwargs):
        return scope(queryset, info.context.get_user(required=False))


def decode_id(global_id, expected_type: str | None = None):
    """The primary key inside a global ID (or a raw id), checked against the expected type."""
    from backend.core.errors import NotFound

    if isinstance(global_id, relay.GlobalID):
        if expected_type and global_id.type_name != expected_type:
            raise NotFound()
        return global_id.node_id
    try:
        gid = relay.GlobalID.from_id(str(global_id))
    except Exception:
        raise NotFound()
    if expected_type and gid.type_name != expected_type:
        raise NotFound()
    return gid.node_id


@strawberry.type(description="The object that was deleted.")
class Deleted:
    id: relay.GlobalID
