"""Payload error codes of prompt recipes."""

from backend.core.codes import domain_codes

RecipeErrorCode = domain_codes("RecipeErrorCode", "INVALID_TEMPLATE MISSING_VARIABLE")
