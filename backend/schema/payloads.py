"""Mutation payloads: the result, or the input errors of the mutation's domain with typed codes.

Each domain's mutations return ``<Result> | <Domain>Errors``; ``<Domain>Errors.messages`` lists one
``<Domain>Error`` per wrong input (the input field in camelCase, a message for people, a code of
the domain's enum). A service signals input a user can correct with Django's ``ValidationError``
(its codes are members of the domain's enum); anything else (not signed in, not found, forbidden,
limits) is a top-level error with an ``ErrorCode`` in ``extensions.code`` (see errors.py).
"""

import inspect
import logging
from enum import StrEnum
from typing import Annotated, Union

import strawberry
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from strawberry.annotation import StrawberryAnnotation
from strawberry.types.field import UNRESOLVED
from strawberry.utils.str_converters import capitalize_first, to_camel_case
from strawberry_django.mutations.fields import DjangoMutationBase, _get_mutation_types

logger = logging.getLogger("backend.graphql")


def error_types(domain: str, codes: type[StrEnum], description: str):
    """The GraphQL enum of a domain's codes and its ``<domain>Errors`` payload member."""
    code_enum = strawberry.enum(codes, name=codes.__name__, description=description)

    error = strawberry.type(type(f"{domain}Error", (), {
        "__annotations__": {"field": str | None, "message": str, "code": code_enum},
        "field": strawberry.field(description="The input field at fault (camelCase, dotted for nested inputs), "
                                              "or null when the input as a whole is."),
        "message": strawberry.field(description="What to correct, for people."),
        "code": strawberry.field(description="What is wrong, for programs."),
    }), name=f"{domain}Error", description=f"An input the {domain.lower()} operation refused.")

    errors = strawberry.type(type(f"{domain}Errors", (), {
        "__annotations__": {"messages": list[error]},
        "messages": strawberry.field(description="Every input error found (at least one)."),
    }), name=f"{domain}Errors", description="The operation changed nothing: correct these inputs and try again.")
    errors.codes = codes
    errors.error = error
    return errors


def to_errors(errors_type, exc: ValidationError):
    """A ValidationError as the domain's errors payload; a code outside the domain's enum is a bug."""
    items = exc.error_dict.items() if hasattr(exc, "error_dict") else [(NON_FIELD_ERRORS, exc.error_list)]
    messages = []
    for field, field_errors in items:
        for error in field_errors:
            message = error.message % error.params if error.params else error.message
            messages.append(errors_type.error(
                field=to_camel_case(field) if field != NON_FIELD_ERRORS else None,
                message=str(message), code=errors_type.codes(error.code)))
    return errors_type(messages=messages)


class PayloadMutation(DjangoMutationBase):
    """A mutation whose ValidationErrors become its domain's errors payload; every other exception
    goes on to the top-level error codes."""

    errors_type = None

    def __copy__(self):
        new_field = super().__copy__()
        new_field.errors_type = self.errors_type
        return new_field

    def resolve_type(self, *, type_definition=None):
        resolved = super(DjangoMutationBase, self).resolve_type(type_definition=type_definition)
        if resolved is not UNRESOLVED and not self._resolved_return_type:
            types_ = tuple(_get_mutation_types(resolved))
            if self.errors_type not in types_:
                name = capitalize_first(to_camel_case(self.python_name))
                payload = strawberry.union(f"{name}Payload", description=(
                    f"What {to_camel_case(self.python_name)} returns: its result, or the input errors (nothing changed)."))
                resolved = Annotated[Union[(*types_, self.errors_type)], payload]  # noqa: UP007
                self.type_annotation = StrawberryAnnotation(
                    resolved, namespace=getattr(self.type_annotation, "namespace", None))
            self._resolved_return_type = True
        return resolved

    def get_result(self, source, info, args, kwargs):
        try:
            resolved = self.resolver(source, info, args, kwargs)
        except ValidationError as exc:
            return to_errors(self.errors_type, exc)
        if inspect.isawaitable(resolved):
            async def payload():
                try:
                    return await resolved
                except ValidationError as exc:
                    return to_errors(self.errors_type, exc)
            return payload()
        return resolved


def mutation_of(errors_type):
    """The ``@mutation`` decorator of a domain: ``mutation_of(UserErrors)``."""

    def mutation(resolver=None, *, description: str | None = None, name: str | None = None):
        field = PayloadMutation(python_name=None, graphql_name=name, type_annotation=None, description=description,
                                permission_classes=[], directives=(), extensions=(), handle_django_errors=False)
        field.errors_type = errors_type
        return field(resolver) if resolver is not None else field

    return mutation
