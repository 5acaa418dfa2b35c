"""Your quotas and how much of each you have used."""

import enum
from datetime import datetime
from typing import NewType

import strawberry
import strawberry_django

from backend.quotas import services

from .context import Info

BigInt = NewType("BigInt", int)
BIG_INT = strawberry.scalar(name="BigInt", serialize=int, parse_value=int,
                            description="An integer that may exceed 32 bits (sent as a JSON number).")


@strawberry.enum(description="What a quota limits.")
class QuotaKind(enum.Enum):
    TOKENS_PER_DAY = services.TOKENS_PER_DAY
    TURNS_PER_MINUTE = services.TURNS_PER_MINUTE
    DOCUMENTS = services.DOCUMENTS
    STORED_BYTES = services.STORED_BYTES


@strawberry.type
class QuotaUsage:
    quota: QuotaKind
    model: str | None = strawberry.field(description="TOKENS_PER_DAY: the model it counts.")
    used: BigInt
    limit: BigInt | None = strawberry.field(
        description="Null: unlimited (tokens paid by your own provider key have no quota).")
    resets_at: datetime | None = strawberry.field(description="Null: it does not reset; delete documents to free it.")


@strawberry.type
class Query:
    @strawberry_django.field(description="Each of your quotas with your usage; exceeding one gives QUOTA_EXCEEDED.")
    def quotas(self, info: Info) -> list[QuotaUsage]:
        return [QuotaUsage(quota=QuotaKind(u.quota), model=u.model, used=u.used, limit=u.limit, resets_at=u.resets_at)
                for u in services.usage(info.context.get_user())]
