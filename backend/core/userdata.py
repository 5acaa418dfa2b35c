"""A registry through which each app contributes to a user's export, import and deletion.

An app registers one ``UserDataPart``; the users service walks the registry, so an account's
export holds every app's data and deleting an account removes every app's files.
"""

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class UserDataPart:
    name: str
    export: Callable[[Any], Any]
    import_: Callable[[Any, Any], dict]
    files: Callable[[Any], list[tuple[Any, str]]] = lambda user: []


_parts: dict[str, UserDataPart] = {}


def register(part: UserDataPart) -> None:
    _parts[part.name] = part


def parts() -> list[UserDataPart]:
    return list(_parts.values())
