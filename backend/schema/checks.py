"""The checks every operation passes before it is validated and run: cost, paging arguments,
text. A failing check refuses the whole operation with BAD_USER_INPUT; nothing runs."""

from django.conf import settings
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from .cost import operation_cost, paging_error
from .inputs import text_error
from backend.core.codes import ErrorCode


class OperationChecks(SchemaExtension):
    def on_validate(self):
        context = self.execution_context
        document, variables = context.graphql_document, context.variables
        if document is not None:
            cost, limit = operation_cost(document, context.operation_name, variables), settings.GRAPHQL_MAX_COST
            if cost > limit:
                self._refuse(f"This operation costs {cost}, more than the {limit} allowed: ask for fewer items "
                             "or split it into several requests.", cost=cost, maxCost=limit)
            elif (problem := paging_error(document, variables) or text_error(document, variables)) is not None:
                self._refuse(problem)
        yield

    def _refuse(self, message: str, **details) -> None:
        self.execution_context.pre_execution_errors = [
            GraphQLError(message, extensions={"code": ErrorCode.BAD_USER_INPUT, **details})]


class SocketCredential(SchemaExtension):
    """On a websocket, every operation first checks that the socket's credential still stands (a
    token not revoked, a session not ended, the password unchanged, the account usable): one that
    does not runs as anonymous, so it gets UNAUTHENTICATED."""

    async def on_operation(self):
        context = self.execution_context.context
        if getattr(context, "ws", None) is not None:  # each operation on a socket: an id of its own
            from backend.core.logs import bind, new_id

            bind(operation_id=new_id())
        credential = getattr(context, "credential", None)
        if getattr(context, "ws", None) is not None and credential is not None:
            from backend.core.concurrency import in_thread_pool
            from backend.users.credentials import credential_valid

            if not await in_thread_pool(credential_valid)(credential):
                context.user, context.credential = None, None
        yield


class OperationMetrics(SchemaExtension):
    """Counts every operation by name, type and outcome (ok, or its first error's code)."""

    def on_operation(self):
        yield
        from backend.core.metrics import GRAPHQL_OPERATIONS

        context = self.execution_context
        errors = getattr(context.result, "errors", None) or context.pre_execution_errors or []
        outcome = ((errors[0].extensions or {}).get("code") or "ERROR") if errors else "ok"
        try:
            kind = context.operation_type.value
        except Exception:  # noqa: BLE001 - a document that did not parse has no type
            kind = "unknown"
        GRAPHQL_OPERATIONS.labels(context.operation_name or "anonymous", kind, outcome).inc()
