import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce

from backend.core.scoping import ScopedQuerySet


class Chat(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chats")
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=40)
    settings = models.JSONField(default=dict, blank=True)  # temperature, max_tokens, system_prompt, top_p, rag
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    # An import still writing its messages (in short transactions): seen by no one until complete.
    importing = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-pinned", "-updated_at", "-id"]
        # The sweep for imports that stopped midway (every web process, every 30 s): the few
        # hidden chats, not the whole table.
        indexes = [models.Index(fields=["updated_at"], condition=models.Q(importing=True), name="chat_importing")]

    @classmethod
    def visible_q(cls, user):
        return Q(owner=user, importing=False)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        SYSTEM = "system"

    class Status(models.TextChoices):
        STREAMING = "STREAMING"
        COMPLETE = "COMPLETE"
        CANCELLED = "CANCELLED"
        INTERRUPTED = "INTERRUPTED"
        FAILED = "FAILED"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    chat = models.ForeignKey(Chat, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    model = models.CharField(max_length=40, blank=True)
    # Who wrote an answer: a language model's id, or "extractive" (quotes, no model); "" for questions.
    generator = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETE)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    sources = models.JSONField(default=list, blank=True)
    retrieval = models.JSONField(null=True, blank=True)
    groundedness = models.FloatField(null=True, blank=True)
    unsupported_sentences = models.JSONField(default=list, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The client's own id for a question (chatStream's clientMessageId): a retried send finds it.
    client_id = models.CharField(max_length=64, null=True, blank=True)
    # An answer's question; answers regenerated for one question are its versions, one of them
    # current (the others ``superseded``). Older answers have none: their position is their own.
    # Messages go only with their chat, question and answers together: DO_NOTHING lets the ORM
    # delete a chat's messages with one statement (with CASCADE it read them all first, a
    # query per few hundred: 3.4 s and 245 queries for a 20,000-message chat, holding SQLite's
    # write lock). The database's foreign key still refuses a question deleted without its answers.
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.DO_NOTHING, related_name="replies")
    superseded = models.BooleanField(default=False)
    rating = models.SmallIntegerField(null=True, blank=True)  # 1 up, -1 down
    feedback_comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["chat", "client_id"], name="one_client_id_per_chat",
                                               condition=Q(client_id__isnull=False))]
        # The sweep for answers left STREAMING by a dead process (every web process, every
        # STREAM_SWEEP_INTERVAL s) reads this small index, not every message ever written. On
        # ``status``, not ``updated_at``: the saves of a growing answer then change no indexed
        # column (PostgreSQL can update those rows in place).
        indexes = [models.Index(fields=["status"], condition=Q(status="STREAMING"), name="message_streaming"),
                   # A turn's quota checks count the user's answers of the last minute and of the
                   # day, chat by chat: without it, every message the user ever wrote was read.
                   models.Index(fields=["chat", "created_at"], name="message_chat_created"),
                   # A chat's messages in conversation order (``in_order``), read page by page:
                   # without it every page sorted the whole chat.
                   models.Index(F("chat"), Coalesce("reply_to", "id"), F("id"), name="message_conversation_order")]

    @classmethod
    def visible_q(cls, user):
        return Q(chat__owner=user, chat__importing=False)

    # Conversation order: each question, then its answers (a regenerated answer keeps its
    # question's place). The index message_conversation_order is (chat, this).
    CONVERSATION_ORDER = (Coalesce("reply_to_id", "id"), "id")

    @staticmethod
    def in_order(queryset):
        """A chat's current messages in conversation order."""
        return queryset.filter(superseded=False).order_by(*Message.CONVERSATION_ORDER)


class AiPreset(models.Model):
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ai_presets")
    name = models.CharField(max_length=100)
    model = models.CharField(max_length=40)
    temperature = models.FloatField(default=0.7)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(default=1024)
    system_prompt = models.TextField(blank=True, max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="one_preset_name_per_user")]

    @classmethod
    def visible_q(cls, user):
        return Q(owner=user)


class ProviderKey(models.Model):
    """A user's own API key for a provider, encrypted at rest; write-only through the API."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_keys")
    provider = models.CharField(max_length=20, choices=[("openai", "OpenAI"), ("cloudflare", "Cloudflare")])
    secret = models.BinaryField()
    account_id = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "provider"], name="one_key_per_provider")]

    @classmethod
    def visible_q(cls, user):
        return Q(owner=user)
