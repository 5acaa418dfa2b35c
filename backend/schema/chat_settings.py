"""Typed views of what a chat stores as JSON: its settings and each RAG answer's retrieval trace."""

import strawberry
from strawberry import relay

from .documents import RetrievalStrategy


@strawberry.type(description="Retrieval settings; a null field takes your RAG preferences (me.preferences.rag).")
class RagSettings:
    strategy: RetrievalStrategy | None
    k: int | None = strawberry.field(description="How many passages to retrieve.")
    threshold: float | None = strawberry.field(description="The lowest score a passage may have (-1 to 1).")
    context_budget: int | None = strawberry.field(description="Tokens of passages the model is given at most.")
    include_metadata: bool | None = strawberry.field(description="Whether titles and pages go with the passages.")
    generator: str | None = strawberry.field(description="Who writes the answers: auto, extractive or a model id.")
    collection_ids: list[relay.GlobalID] = strawberry.field(
        description="The collections searched; empty: every collection you may read.")
    file_types: list[str] = strawberry.field(description="Only documents of these file types; empty: all.")
    tags: list[str] = strawberry.field(description="Only documents with one of these tags; empty: all.")


@strawberry.type(description="A chat's own settings; a null field takes your AI preferences (me.preferences.ai).")
class ChatSettings:
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    system_prompt: str | None
    rag: RagSettings


@strawberry.type(description="One passage an answer was given, as it was scored.")
class RetrievedPassage:
    number: int = strawberry.field(description="Its number in the answer's citations ([1], [2], ...).")
    document_id: relay.GlobalID
    chunk_id: relay.GlobalID
    title: str
    page: int | None
    score: float


@strawberry.type(description="How a RAG answer found its passages.")
class RetrievalTrace:
    query: str = strawberry.field(description="What was searched: the question, rewritten when it follows up.")
    original_question: str
    strategy: RetrievalStrategy
    generator: str | None = strawberry.field(description="Who wrote the answer: a model id, or extractive.")
    settings: RagSettings = strawberry.field(description="The settings in force (defaults included).")
    passages: list[RetrievedPassage]


def rag_settings(stored: dict | None) -> RagSettings:
    stored = stored or {}
    filters = stored.get("filters") or {}
    strategy = stored.get("strategy")
    return RagSettings(
        strategy=RetrievalStrategy(strategy) if strategy else None, k=stored.get("k"),
        threshold=stored.get("threshold"), context_budget=stored.get("context_budget"),
        include_metadata=stored.get("include_metadata"), generator=stored.get("generator"),
        collection_ids=[relay.GlobalID("Collection", str(pk)) for pk in stored.get("collection_ids") or []],
        file_types=list(filters.get("file_types") or []), tags=list(filters.get("tags") or []))


def chat_settings(stored: dict | None) -> ChatSettings:
    stored = stored or {}
    return ChatSettings(temperature=stored.get("temperature"), top_p=stored.get("top_p"),
                        max_tokens=stored.get("max_tokens"), system_prompt=stored.get("system_prompt"),
                        rag=rag_settings(stored.get("rag")))


def retrieval_trace(stored: dict | None) -> RetrievalTrace | None:
    if not stored:
        return None
    return RetrievalTrace(
        query=stored.get("query", ""), original_question=stored.get("original_question", stored.get("query", "")),
        strategy=RetrievalStrategy(stored.get("strategy") or (stored.get("settings") or {}).get("strategy")),
        generator=stored.get("generator"), settings=rag_settings(stored.get("settings")),
        passages=[RetrievedPassage(number=p["number"], document_id=relay.GlobalID("Document", str(p["document_id"])),
                                   chunk_id=relay.GlobalID("Chunk", str(p["chunk_id"])), title=p.get("title", ""),
                                   page=p.get("page"), score=p.get("score", 0.0))
                  for p in stored.get("passages") or []])
