"""The GraphQL schema, assembled from one part per domain."""

import logging

import strawberry
from django.conf import settings
from graphql import GraphQLError
from strawberry import relay
from strawberry.extensions import DisableIntrospection, MaxTokensLimiter
from strawberry.file_uploads import Upload
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry_django.optimizer import DjangoOptimizerExtension

from . import chats, docs, document_versions, documents, quotas, recipes, streams, users
from .checks import OperationChecks, OperationMetrics, SocketCredential
from .errors import ErrorCodes, TopLevelErrorCode, classify
from .inputs import UPLOAD
from .persisted import PersistedQueries, trusted_documents
from .validation import AliasLimit, DepthLimit, ParseOnce, ValidateOnce
from backend.core.codes import ErrorCode

logger = logging.getLogger("backend.graphql")


@strawberry.type
class NodeQuery:
    node: relay.Node | None = strawberry.relay.node(description="Any object you may see, by its global ID.")


Query = merge_types("Query", (NodeQuery, users.Query, documents.Query, chats.Query, recipes.Query, quotas.Query))
Mutation = merge_types("Mutation", (users.Mutation, documents.Mutation, document_versions.Mutation, chats.Mutation,
                                    recipes.Mutation))
Subscription = merge_types("Subscription", (users.Subscription, documents.Subscription, streams.Subscription))


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context=None) -> None:
        # Expected errors (codes other than INTERNAL) are answers, not faults: don't log them.
        for error in errors:
            if classify(error)[0] == ErrorCode.INTERNAL and not (error.extensions or {}).get("code"):
                logger.error("GraphQL error: %s", error.message, exc_info=error.original_error)


def build_schema() -> Schema:
    # Limits are read from settings for each operation; ValidateOnce comes after the rules.
    extensions = [
        PersistedQueries,  # first: the others see the operation's text
        SocketCredential,
        DepthLimit,
        AliasLimit,
        lambda: MaxTokensLimiter(max_token_count=settings.GRAPHQL_MAX_TOKENS),
        ParseOnce,
        ValidateOnce,
        OperationChecks,  # after ValidateOnce: its refusal must not be taken for a validated document
        DjangoOptimizerExtension,
        OperationMetrics,  # before ErrorCodes: its exit runs after theirs, so it counts the codes clients see
        ErrorCodes,
    ]
    if not settings.GRAPHQL_INTROSPECTION:
        extensions.insert(0, DisableIntrospection)
    built = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        types=[TopLevelErrorCode],
        config=StrawberryConfig(disable_field_suggestions=True,
                                scalar_map={quotas.BigInt: quotas.BIG_INT, Upload: UPLOAD}),
    )
    docs.apply(built._schema)
    trusted_documents()  # loaded (and checked) as the server starts, not at its first request
    return built


schema = build_schema()
