"""A JSON list column that holds every one of some values, in SQL on both engines (PostgreSQL's
``@>``, SQLite's ``json_each``): Django's ``contains`` on a JSONField is PostgreSQL's only. Tag
filters use it in the database rather than reading every row's tags into Python."""

import json

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL


def contains_all_sql(column: str, values) -> tuple[str, list]:
    """SQL (and its parameters) true where the JSON list in ``column`` holds every value."""
    values = list(dict.fromkeys(values))
    if connection.vendor == "postgresql":
        return f"{column} @> %s::jsonb", [json.dumps(values)]
    return (f"(SELECT count(DISTINCT value) FROM json_each({column}) "
            f"WHERE value IN ({', '.join(['%s'] * len(values))})) = %s", values + [len(values)])


def contains_all(queryset, field: str, values):
    """The rows of ``queryset`` whose JSON list ``field`` holds every one of ``values``."""
    quote = connection.ops.quote_name
    sql, params = contains_all_sql(f"{quote(queryset.model._meta.db_table)}.{quote(field)}", values)
    return queryset.alias(holds_all=RawSQL(sql, params, output_field=BooleanField())).filter(holds_all=True)
