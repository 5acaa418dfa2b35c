"""Chats, messages, models, presets, provider keys and the chatStream subscription."""

import enum
from datetime import datetime

import strawberry
import strawberry_django
from strawberry import relay
from strawberry.scalars import JSON

from backend.chats import conversations, generation, imports, keys, portability, presets, turn
from backend.core.concurrency import in_thread_pool
from backend.rag import catalog
from backend.rag.providers import ProviderErrorCode
from backend.chats.models import AiPreset, Chat, Message

from backend.chats.codes import ChatErrorCode

from .base import Connection, Deleted, ScopedNode, decode_id
from .chat_settings import ChatSettings, RetrievalTrace, chat_settings, retrieval_trace
from .context import Info
from .documents import RetrievalStrategy
from .users import input_to_patch
from .payloads import error_types, mutation_of

ChatErrors = error_types("Chat", ChatErrorCode, "Why a chat operation refused its input.")
mutation = mutation_of(ChatErrors)


MessageStatus = strawberry.enum(Message.Status, name="MessageStatus")


@strawberry.enum
class MessageRole(enum.Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


@strawberry.enum
class ExportFormat(enum.Enum):
    JSON = "json"
    MARKDOWN = "markdown"


Provider = strawberry.enum(enum.Enum("Provider", {p.upper(): p for p in catalog.PROVIDERS}),
                           description="A provider whose API key you may store.")


@strawberry.enum(description="Why a model cannot be used.")
class UnavailableReason(enum.Enum):
    NO_KEY = catalog.NO_KEY
    NOT_CONFIGURED = catalog.NOT_CONFIGURED


StreamErrorCode = strawberry.enum(ProviderErrorCode, name="StreamErrorCode",
                                  description="Why an answer failed (StreamFailed.code, Message.errorCode).")


@strawberry.type
class Model:
    id: str
    name: str
    provider: str
    description: str
    max_tokens: int
    uses_documents: bool
    available: bool
    unavailable_reason: str | None = strawberry.field(description="What to do to use it, when it is unavailable.")
    unavailable_code: UnavailableReason | None
    generator: str | None = strawberry.field(
        description="RAG: who writes its answers for you (a language model's id, or extractive).")


@strawberry.type
class Citation:
    number: int
    document_id: relay.GlobalID
    title: str
    page: int | None
    chunk_id: relay.GlobalID
    chunk_position: int
    snippet: str
    score: float
    version: int | None = strawberry.field(
        description="The version of the document it quotes (its chunk stays readable after newer versions).")

    @classmethod
    def from_dict(cls, s: dict) -> "Citation":
        return cls(number=s["number"], document_id=relay.GlobalID("Document", str(s["document_id"])),
                   title=s["title"], page=s.get("page"), chunk_id=relay.GlobalID("Chunk", str(s["chunk_id"])),
                   chunk_position=s["chunk_position"], snippet=s["snippet"], score=s["score"],
                   version=s.get("version"))


@strawberry_django.type(Message, name="Message")
class MessageType(ScopedNode):
    role: MessageRole
    content: str
    model: str
    generator: str = strawberry_django.field(
        description="Who wrote this answer: a language model's id, or extractive (quotes from the passages, no "
                    "model); empty for questions.")
    status: MessageStatus
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int | None
    first_token_ms: int | None

    @strawberry_django.field(only=["error_code"], description="Why the answer FAILED or was INTERRUPTED (null otherwise).")
    def error_code(self) -> StreamErrorCode | None:
        return ProviderErrorCode(self.error_code) if self.error_code else None

    error_message: str | None
    groundedness: float | None = strawberry_django.field(
        description="Share of the answer's sentences supported by the passages they cite.")
    unsupported_sentences: list[str]

    @strawberry_django.field(only=["retrieval"], description="How a RAG answer found its passages (null otherwise).")
    def retrieval(self) -> RetrievalTrace | None:
        return retrieval_trace(self.retrieval)

    rating: int | None
    feedback_comment: str
    created_at: datetime

    client_message_id: str | None = strawberry_django.field(
        field_name="client_id", description="Questions: the id the client sent it with (chatStream).")

    @strawberry_django.field(only=["sources"])
    def sources(self, root: Message) -> list[Citation]:
        return [Citation.from_dict(s) for s in root.sources or []]

    @strawberry_django.field(only=["superseded"], description="Answers: whether this is the version the chat shows.")
    def current(self, root: Message) -> bool:
        return not root.superseded

    @strawberry_django.field(only=["role", "reply_to_id"],
                             description="Answers: every answer to the same question, oldest first, this one "
                                         "included; each keeps its own rating.")
    def versions(self, root: Message) -> list["MessageType"]:
        return turn.versions(root)


@strawberry_django.type(Chat, name="Chat")
class ChatType(ScopedNode):
    title: str
    model: str

    @strawberry_django.field(only=["settings"], description="This chat's own settings.")
    def settings(self) -> ChatSettings:
        return chat_settings(self.settings)

    pinned: bool
    archived: bool
    created_at: datetime
    updated_at: datetime

    @strawberry_django.connection(Connection[MessageType],
                                  description="The conversation: each question, then the current version of its answer.")
    def messages(self, root: Chat) -> list[MessageType]:
        return Message.in_order(root.messages.all())


@strawberry_django.type(AiPreset, name="AiPreset")
class AiPresetType(ScopedNode):
    name: str
    model: str
    temperature: float
    top_p: float | None
    max_tokens: int
    system_prompt: str
    created_at: datetime
    updated_at: datetime


@strawberry.input
class RagSettingsInput:
    strategy: RetrievalStrategy | None = strawberry.UNSET
    k: int | None = strawberry.UNSET
    threshold: float | None = strawberry.UNSET
    context_budget: int | None = strawberry.UNSET
    include_metadata: bool | None = strawberry.UNSET
    generator: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Who writes this chat's answers: auto, extractive, or llama-3, gpt-3.5-turbo, gpt-4.")
    collection_ids: list[relay.GlobalID] | None = strawberry.UNSET
    file_types: list[str] | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET


@strawberry.input
class ChatParametersInput:
    temperature: float | None = strawberry.UNSET
    top_p: float | None = strawberry.UNSET
    max_tokens: int | None = strawberry.UNSET
    system_prompt: str | None = strawberry.UNSET
    rag: RagSettingsInput | None = strawberry.UNSET


def parameters_dict(value: ChatParametersInput | None) -> dict:
    if value is None:
        return {}
    patch = input_to_patch(value)
    rag = patch.get("rag")
    if rag:
        if rag.get("collection_ids"):
            rag["collection_ids"] = [str(decode_id(c, "Collection")) for c in rag["collection_ids"]]
        filters = {k: rag.pop(k) for k in ("file_types", "tags") if k in rag}
        if filters:
            rag["filters"] = {k: v for k, v in filters.items() if v}
    return patch


@strawberry.type
class ImportedChats:
    created: int


@strawberry.type
class ProviderKeyStatus:
    provider: Provider
    is_set: bool


@strawberry.type
class ModelUsage:
    model: str
    messages: int
    prompt_tokens: int
    completion_tokens: int
    average_latency_ms: float | None
    average_first_token_ms: float | None


@strawberry.type
class UsageStats:
    models: list[ModelUsage]
    rag_questions: int
    retrieval_found_nothing: int
    ratings_up: int
    ratings_down: int


def _chat_pk(value):
    return decode_id(value, "Chat")


def _message_pk(value):
    return decode_id(value, "Message")


@strawberry.type
class Query:
    chat: ChatType | None = strawberry_django.node(description="A chat of yours, or null.")

    @strawberry_django.field(description="The four models, and whether each is available here.")
    def models(self, info: Info) -> list[Model]:
        return [Model(id=s.info.id, name=s.info.name, provider=s.info.provider, description=s.info.description,
                      max_tokens=s.info.max_tokens, uses_documents=s.info.uses_documents,
                      available=s.availability.available, unavailable_reason=s.availability.message,
                      unavailable_code=UnavailableReason(s.availability.reason) if s.availability.reason else None,
                      generator=s.generator)
                for s in keys.models_for(info.context.get_user(required=False))]

    @strawberry_django.connection(Connection[ChatType], description="Your chats, pinned first.")
    def chats(self, info: Info, search: str | None = None, archived: bool | None = False) -> list[ChatType]:
        return conversations.list_chats(info.context.get_user(), search=search, archived=archived)

    @strawberry_django.connection(Connection[AiPresetType], description="Your AI parameter presets.")
    def ai_presets(self, info: Info) -> list[AiPresetType]:
        info.context.get_user()
        return AiPreset.objects.all()

    @strawberry_django.field
    def export_chat(self, info: Info, id: relay.GlobalID, format: ExportFormat = ExportFormat.JSON) -> str:
        return portability.export_chat(info.context.get_user(), _chat_pk(id), format.value)

    @strawberry_django.field(description="Which provider keys of your own are stored (never the keys).")
    def provider_keys(self, info: Info) -> list[ProviderKeyStatus]:
        from backend.chats.models import ProviderKey

        user = info.context.get_user()
        have = set(ProviderKey.objects.visible_to(user).values_list("provider", flat=True))
        return [ProviderKeyStatus(provider=p, is_set=p.value in have) for p in Provider]

    @strawberry_django.field
    def usage_stats(self, info: Info) -> UsageStats:
        from backend.chats.analytics import usage

        data = usage(info.context.get_user())
        return UsageStats(models=[ModelUsage(**m) for m in data["models"]], rag_questions=data["rag_questions"],
                          retrieval_found_nothing=data["retrieval_found_nothing"], ratings_up=data["ratings_up"],
                          ratings_down=data["ratings_down"])


@strawberry.type
class Mutation:
    @mutation
    def create_chat(self, info: Info, title: str = "", model: str | None = None,
                    parameters: ChatParametersInput | None = None, preset_id: relay.GlobalID | None = None) -> ChatType:
        return conversations.create_chat(info.context.get_user(), title=title, model=model,
                                    settings_=parameters_dict(parameters),
                                    preset_id=decode_id(preset_id, "AiPreset") if preset_id else None)

    @mutation
    def update_chat(self, info: Info, id: relay.GlobalID, title: str | None = None, model: str | None = None,
                    parameters: ChatParametersInput | None = None, pinned: bool | None = None,
                    archived: bool | None = None) -> ChatType:
        return conversations.update_chat(info.context.get_user(), _chat_pk(id), title=title, model=model,
                                    settings_=parameters_dict(parameters) if parameters else None,
                                    pinned=pinned, archived=archived)

    @mutation
    def delete_chat(self, info: Info, id: relay.GlobalID) -> Deleted:
        conversations.delete_chat(info.context.get_user(), _chat_pk(id))
        return Deleted(id=id)

    @mutation(description="Chats from exportChat(format: JSON): one or a list; repeats are skipped.")
    def import_chats(self, info: Info, data: JSON) -> ImportedChats:
        return ImportedChats(created=imports.import_chats(info.context.get_user(), data))

    @mutation
    def rate_message(self, info: Info, id: relay.GlobalID, rating: int | None, comment: str = "") -> MessageType:
        return conversations.rate_message(info.context.get_user(), _message_pk(id), rating=rating, comment=comment)

    @mutation(description="Stop an answer being written, on whichever server it runs; returns it "
                                            "in its final state (CANCELLED, with the text so far).")
    async def cancel_generation(self, info: Info, message_id: relay.GlobalID) -> MessageType:
        user, pk = info.context.get_user(), _message_pk(message_id)
        await in_thread_pool(turn.request_cancel)(user, pk)
        return await generation.settled(pk)

    @mutation(description="Answer the question of this answer again: returns the new answer, "
                                            "STREAMING, to follow with answerStream. It takes the old one's place; "
                                            "the old one stays as an earlier version (versions, selectMessageVersion).")
    def regenerate_message(self, info: Info, id: relay.GlobalID) -> MessageType:
        started = turn.start_regeneration(info.context.get_user(), _message_pk(id))
        generation.launch(started)
        return started.answer

    @mutation(description="Show this version of an answer in its chat (see Message.versions).")
    def select_message_version(self, info: Info, id: relay.GlobalID) -> MessageType:
        return turn.select_version(info.context.get_user(), _message_pk(id))

    @mutation
    def create_ai_preset(self, info: Info, name: str, model: str, temperature: float = 0.7, top_p: float | None = None,
                         max_tokens: int = 1024, system_prompt: str = "") -> AiPresetType:
        return presets.create_preset(info.context.get_user(), name=name, model=model, temperature=temperature,
                                      top_p=top_p, max_tokens=max_tokens, system_prompt=system_prompt)

    @mutation
    def update_ai_preset(self, info: Info, id: relay.GlobalID, name: str | None = None, model: str | None = None,
                         temperature: float | None = None, top_p: float | None = None, max_tokens: int | None = None,
                         system_prompt: str | None = None) -> AiPresetType:
        return presets.update_preset(info.context.get_user(), decode_id(id, "AiPreset"), name=name, model=model,
                                      temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                      system_prompt=system_prompt)

    @mutation
    def delete_ai_preset(self, info: Info, id: relay.GlobalID) -> Deleted:
        presets.delete_preset(info.context.get_user(), decode_id(id, "AiPreset"))
        return Deleted(id=id)

    @mutation(description="Store your own key for a provider (encrypted; never shown again).")
    def set_provider_key(self, info: Info, provider: Provider, api_key: str, account_id: str = "") -> ProviderKeyStatus:
        keys.set_provider_key(info.context.get_user(), provider=provider.value, api_key=api_key,
                                  account_id=account_id)
        return ProviderKeyStatus(provider=provider, is_set=True)

    @mutation
    def clear_provider_key(self, info: Info, provider: Provider) -> ProviderKeyStatus:
        keys.clear_provider_key(info.context.get_user(), provider=provider.value)
        return ProviderKeyStatus(provider=provider, is_set=False)
