"""Query limits, and parsing and validation done once per distinct query.

A client sends the same few operations again and again, and validating a document against the
schema costs about as much as running a small query. So a query text that passed validation
under the current rules is not validated again (a bounded LRU of passing texts; a failing one is
validated every time). The limits are rule classes made once per limit value, so a changed limit
(settings read for each operation) is a different set of rules and validates afresh. Parsing
(0.2-0.4 ms for the app's operations) is cached too (``ParseOnce``).
"""

import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Iterator

from django.conf import settings
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules, ParserCache, SchemaExtension
from strawberry.extensions import max_aliases, query_depth_limiter


@lru_cache(maxsize=64)
def _depth_rule(max_depth: int):
    return query_depth_limiter.create_validator(max_depth, None, None)


@lru_cache(maxsize=64)
def _aliases_rule(max_aliases_count: int):
    return max_aliases.create_validator(max_aliases_count)


class DepthLimit(AddValidationRules):
    def __init__(self) -> None:
        super().__init__([_depth_rule(settings.GRAPHQL_MAX_DEPTH)])


class AliasLimit(AddValidationRules):
    def __init__(self) -> None:
        super().__init__([_aliases_rule(settings.GRAPHQL_MAX_ALIASES)])


class ValidateOnce(SchemaExtension):
    """Skips validation of a query text that already passed under the same rules. Put it after
    the extensions that add rules (they add them when the operation starts)."""

    MAX_ENTRIES = 1024
    _passed: "OrderedDict[tuple, None]" = OrderedDict()
    _lock = threading.Lock()

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        key = (context.query, tuple(context.validation_rules)) if context.query else None
        if key is not None:
            with self._lock:
                if key in self._passed:
                    self._passed.move_to_end(key)
                    context.pre_execution_errors = []  # validated: strawberry skips its own run
        yield
        if key is not None and context.pre_execution_errors == []:
            with self._lock:
                self._passed[key] = None
                while len(self._passed) > self.MAX_ENTRIES:
                    self._passed.popitem(last=False)


class ParseOnce(ParserCache):
    """strawberry's LRU of parsed documents (keyed by the text and the token limit; nothing
    mutates a document), for operations that have a text: a persisted query sent by hash alone
    is left to the usual path, which answers PERSISTED_QUERY_NOT_FOUND; so is a text that does not
    parse (errors are not cached)."""

    MAX_ENTRIES = 512

    def __init__(self) -> None:
        super().__init__(maxsize=self.MAX_ENTRIES)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            try:
                context.graphql_document = self.cached_parse_document(context.query, **context.parse_options)
            except GraphQLError:
                pass  # strawberry's own parse reports it (a syntax error, too many tokens)
        yield
