"""JSON documents whose long lists are generators: written an item at a time, or made whole.

An export holds a few small parts and a long one (a user's chats): the long list is given as a
generator, so a download writes it chat by chat in bounded memory (``write``), while a GraphQL
value needs it whole (``materialize``). Only dicts and generators are walked; any other value is
encoded whole.
"""

import json
import types
from typing import Callable

from django.core.serializers.json import DjangoJSONEncoder


def materialize(value):
    """``value`` with every generator in it (in dicts and generators) made a list."""
    if isinstance(value, dict):
        return {key: materialize(item) for key, item in value.items()}
    if isinstance(value, types.GeneratorType):
        return [materialize(item) for item in value]
    return value


def write(value, out: Callable[[str], object]) -> None:
    """``value`` as JSON text, through ``out`` a piece at a time."""
    if isinstance(value, dict):
        out("{")
        for number, (key, item) in enumerate(value.items()):
            out(("," if number else "") + json.dumps(str(key)) + ":")
            write(item, out)
        out("}")
    elif isinstance(value, types.GeneratorType):
        out("[")
        for number, item in enumerate(value):
            out("," if number else "")
            write(item, out)
        out("]")
    else:
        out(json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False))
