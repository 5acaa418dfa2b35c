"""Usage figures for one user, computed from their messages."""

from django.db.models import Avg, Count, Q, Sum

from .models import Message


def usage(user) -> dict:
    answers = Message.objects.visible_to(user).filter(role=Message.Role.ASSISTANT)
    per_model = (answers.values("model").annotate(
        messages=Count("id"), completion_tokens=Sum("completion_tokens"), average_latency_ms=Avg("latency_ms"),
        average_first_token_ms=Avg("first_token_ms")).order_by("model"))
    prompts = dict(Message.objects.visible_to(user).filter(role=Message.Role.USER).values("model")
                   .annotate(t=Sum("prompt_tokens")).values_list("model", "t"))
    rag = answers.filter(retrieval__isnull=False)
    return {
        "models": [{"model": row["model"], "messages": row["messages"], "prompt_tokens": prompts.get(row["model"]) or 0,
                    "completion_tokens": row["completion_tokens"] or 0,
                    "average_latency_ms": row["average_latency_ms"],
                    "average_first_token_ms": row["average_first_token_ms"]} for row in per_model],
        "rag_questions": rag.count(),
        # Counted by the database: reading every trace (JSON) of a heavy user took seconds.
        "retrieval_found_nothing": rag.filter(Q(retrieval__passages=[]) | Q(retrieval__passages=None)
                                              | Q(retrieval__passages__isnull=True)).count(),
        "ratings_up": answers.filter(rating=1).count(),
        "ratings_down": answers.filter(rating=-1).count(),
    }
