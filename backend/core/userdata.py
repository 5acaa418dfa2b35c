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
    # A part whose import may be large writes in short transactions of its own (one long one would
    # hold SQLite's single write lock against every other user for all of it). ``check(data)``
    # validates its data whole, raising as its import would, before anything of the import is
    # written; the part is then imported after the other parts' transaction.
    check: Callable[[Any], None] | None = None


_parts: dict[str, UserDataPart] = {}


def register(part: UserDataPart) -> None:
    _parts[part.name] = part


def parts() -> list[UserDataPart]:
    return list(_parts.values())
