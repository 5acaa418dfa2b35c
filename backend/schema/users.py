"""Accounts: types and thin resolvers over the users app's services."""

import enum
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
import strawberry_django
from django.contrib import auth
from strawberry import relay
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from backend.core import events
from backend.core.auth import client_address
from backend.core.errors import BadUserInput
from backend.users import preferences as prefs
from backend.users import accounts, credentials, guests, passwords, portability, profile, verification
from backend.users.models import ApiToken, User

from backend.users.codes import AccountErrorCode

from .base import Connection, ScopedNode, decode_id
from .context import Info
from .documents import RetrievalStrategy
from .payloads import error_types, mutation_of

AccountErrors = error_types("Account", AccountErrorCode, "Why an account operation refused its input.")
mutation = mutation_of(AccountErrors)


# --- preferences ----------------------------------------------------------------------------

Theme = strawberry.enum(enum.Enum("Theme", {t.upper(): t for t in prefs.THEMES}), name="Theme")


@strawberry.type
class AiDefaults:
    temperature: float
    max_tokens: int
    system_prompt: str


@strawberry.type(description="Your default retrieval settings for the RAG model (a chat may override them).")
class RagDefaults:
    strategy: RetrievalStrategy
    k: int
    threshold: float
    context_budget: int
    include_metadata: bool
    generator: str = strawberry.field(description="Who writes your RAG answers: auto (the server's choice, else "
                                      "your default model or the first one you can use), extractive, or a model id.")


@strawberry.type
class PrivacySettings:
    chat_history_retention_days: int = strawberry.field(description="0 keeps chats forever.")


@strawberry.type
class Preferences:
    theme: Theme
    language: str
    timezone: str
    default_model: str = strawberry.field(description="The model of a new chat when none is named.")
    ai: AiDefaults
    rag: RagDefaults
    privacy: PrivacySettings

    @classmethod
    def from_stored(cls, stored: dict) -> "Preferences":
        data = prefs.effective(stored)
        return cls(
            theme=Theme(data["theme"]),
            language=data["language"],
            timezone=data["timezone"],
            default_model=data["default_model"],
            ai=AiDefaults(**data["ai"]),
            rag=RagDefaults(**{**data["rag"], "strategy": RetrievalStrategy(data["rag"]["strategy"])}),
            privacy=PrivacySettings(**data["privacy"]),
        )


@strawberry.input
class AiDefaultsInput:
    temperature: float | None = strawberry.UNSET
    max_tokens: int | None = strawberry.UNSET
    system_prompt: str | None = strawberry.UNSET


@strawberry.input
class RagDefaultsInput:
    strategy: RetrievalStrategy | None = strawberry.field(default=strawberry.UNSET,
                                                          description="How passages are found.")
    k: int | None = strawberry.UNSET
    threshold: float | None = strawberry.UNSET
    context_budget: int | None = strawberry.UNSET
    include_metadata: bool | None = strawberry.UNSET
    generator: str | None = strawberry.field(default=strawberry.UNSET,
                                             description="auto, extractive, llama-3, gpt-3.5-turbo or gpt-4")


@strawberry.input
class PrivacySettingsInput:
    chat_history_retention_days: int | None = strawberry.UNSET


@strawberry.input(description="Only the fields given are changed.")
class PreferencesInput:
    theme: Theme | None = strawberry.UNSET
    language: str | None = strawberry.UNSET
    timezone: str | None = strawberry.UNSET
    default_model: str | None = strawberry.UNSET
    ai: AiDefaultsInput | None = strawberry.UNSET
    rag: RagDefaultsInput | None = strawberry.UNSET
    privacy: PrivacySettingsInput | None = strawberry.UNSET


def input_to_patch(value) -> dict:
    """An input object as a dict of the fields that were given (null counts as given)."""
    patch = {}
    for name in value.__dataclass_fields__:
        item = getattr(value, name)
        if item is strawberry.UNSET:
            continue
        if isinstance(item, enum.Enum):
            item = item.value
        elif hasattr(item, "__dataclass_fields__"):
            item = input_to_patch(item)
        patch[name] = item
    return patch


# --- types ----------------------------------------------------------------------------------

@strawberry_django.type(User, name="User")
class UserType(ScopedNode):
    email: str
    username: str
    display_name: str
    bio: str
    is_guest: bool
    pending_email: str = strawberry_django.field(
        description="A new address waiting for its verification link (updateProfile(email:)); empty when none.")
    guest_expires_at: datetime | None
    last_active_at: datetime | None
    created_at: datetime = strawberry_django.field(field_name="date_joined")

    @strawberry_django.field(only=["email_verified_at"])
    def email_verified(self, root: User) -> bool:
        return root.email_verified_at is not None

    @strawberry_django.field(only=["avatar"])
    def avatar_url(self, root: User, info: Info) -> str | None:
        return info.context.absolute_url(root.avatar.url) if root.avatar else None

    @strawberry_django.field(only=["preferences"])
    def preferences(self, root: User) -> Preferences:
        return Preferences.from_stored(root.preferences)


@strawberry_django.type(ApiToken, name="ApiToken")
class ApiTokenType(ScopedNode):
    name: str
    prefix: str = strawberry_django.field(description="The first characters of the secret.")
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


@strawberry.type
class NewApiToken:
    token: ApiTokenType
    secret: str = strawberry.field(description="Shown once: only a hash is kept.")


@strawberry.type
class Ack:
    ok: bool
    message: str = ""


@strawberry.type(description="What an import added; importing the same export again adds nothing.")
class ImportResult:
    profile_updated: bool
    chats_created: int
    presets_created: int
    recipes_created: int
    collections_created: int

    @classmethod
    def of(cls, summary: dict) -> "ImportResult":
        part = lambda name: summary.get(name) or {}  # noqa: E731
        return cls(profile_updated=bool(part("profile").get("updated")),
                   chats_created=part("chats").get("chats_created", 0),
                   presets_created=part("chats").get("presets_created", 0),
                   recipes_created=part("recipes").get("recipes_created", 0),
                   collections_created=part("documents").get("collections_created", 0))


@strawberry.enum
class AccountEventKind(enum.Enum):
    PROFILE_UPDATED = "PROFILE_UPDATED"
    PREFERENCES_UPDATED = "PREFERENCES_UPDATED"
    EMAIL_VERIFIED = "EMAIL_VERIFIED"


@strawberry.type
class AccountEvent:
    kind: AccountEventKind


# --- operations -----------------------------------------------------------------------------

def _http_request(info: Info):
    request = info.context.http_request
    if request is None:
        raise BadUserInput("Signing in and out happens over HTTP, not over the websocket.")
    return request


@strawberry.type
class Query:
    @strawberry_django.field(description="The signed-in user, or null.")
    def me(self, info: Info) -> UserType | None:
        return info.context.get_user(required=False)

    @strawberry_django.connection(Connection[ApiTokenType], description="Your active API tokens.")
    def api_tokens(self, info: Info) -> list[ApiTokenType]:
        info.context.get_user()
        return ApiToken.objects.all()

    @strawberry_django.field(description="Everything this service holds about you, as JSON.")
    def export_my_data(self, info: Info) -> JSON:
        return portability.export_data(info.context.get_user())

    @strawberry_django.field(description="The same export as a file to download (an absolute URL, for the session "
                                         "cookie or the Bearer token): any size of account, in bounded memory.")
    def export_my_data_url(self, info: Info) -> str:
        info.context.get_user()
        return info.context.absolute_url("/me/export")


@strawberry.type
class Mutation:
    @mutation
    def register(self, info: Info, email: str, password: str, username: str | None = None,
                 display_name: str | None = "") -> UserType:
        request = info.context.http_request
        user = accounts.register(email=email, password=password, username=username, display_name=display_name or "",
                                 client_address=info.context.client_address)
        if request is not None:
            auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        info.context.user = user
        return user

    @mutation(description="Sign in with email and password; sets the session cookie.")
    def login(self, info: Info, email: str, password: str) -> UserType:
        request = _http_request(info)
        user = accounts.authenticate(request, email=email, password=password)
        auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        info.context.user = user
        return user

    @strawberry_django.mutation(handle_django_errors=False, description="End the session.")
    def logout(self, info: Info) -> bool:
        user = info.context.user
        auth.logout(_http_request(info))
        credentials.signed_out(user)  # the sockets this session opened close
        info.context.user = None
        return True

    @mutation
    def update_profile(self, info: Info, username: str | None = None, display_name: str | None = None,
                       bio: str | None = None, email: str | None = None,
                       current_password: str | None = None) -> UserType:
        return profile.update_profile(info.context.get_user(), username=username, display_name=display_name,
                                       bio=bio, email=email, current_password=current_password)

    @mutation
    def update_preferences(self, info: Info, preferences: PreferencesInput) -> UserType:
        return profile.update_preferences(info.context.get_user(), input_to_patch(preferences))

    @mutation(description="PNG, JPEG, GIF or WebP; cropped and resized to a square.")
    def upload_avatar(self, info: Info, file: Upload) -> UserType:
        return profile.upload_avatar(info.context.get_user(), file)

    @mutation
    def remove_avatar(self, info: Info) -> UserType:
        return profile.remove_avatar(info.context.get_user())

    @mutation(description="Also revokes your API tokens and ends your other sessions and sockets.")
    def change_password(self, info: Info, current_password: str, new_password: str) -> UserType:
        user = passwords.change_password(info.context.get_user(), current_password=current_password,
                                        new_password=new_password)
        request = info.context.http_request
        if request is not None and getattr(request, "auth_method", "session") == "session":
            auth.update_session_auth_hash(request, user)  # keep this session, end the others
        return user

    @mutation(description="Always answers ok, whether or not the email has an account.")
    def request_password_reset(self, info: Info, email: str) -> Ack:
        passwords.request_password_reset(email, info.context.client_address)
        return Ack(ok=True, message="If an account exists for this address, we sent it a reset link.")

    @mutation(description="Also revokes your API tokens and ends your sessions and sockets.")
    def reset_password(self, info: Info, uid: str, token: str, new_password: str) -> UserType:
        return passwords.reset_password(uid=uid, token=token, new_password=new_password)

    @mutation
    def request_email_verification(self, info: Info) -> Ack:
        verification.request_email_verification(info.context.get_user(), info.context.client_address)
        return Ack(ok=True, message="We sent you a verification link.")

    @mutation
    def verify_email(self, info: Info, uid: str, token: str) -> UserType:
        return verification.verify_email(uid=uid, token=token)

    @mutation
    def create_api_token(self, info: Info, name: str, expires_in_days: int | None = None) -> NewApiToken:
        token, secret = credentials.create_api_token(info.context.get_user(), name=name, expires_in_days=expires_in_days)
        return NewApiToken(token=token, secret=secret)

    @mutation
    def revoke_api_token(self, info: Info, id: relay.GlobalID) -> ApiTokenType:
        return credentials.revoke_api_token(info.context.get_user(), decode_id(id, "ApiToken"))

    @mutation(description="A temporary account whose data expires unless claimed.")
    def start_guest_session(self, info: Info) -> UserType:
        request = _http_request(info)
        user = guests.start_guest_session(client_address(request))
        auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        info.context.user = user
        return user

    @mutation(description="Turn the guest account into a full account, keeping its data.")
    def claim_guest_account(self, info: Info, email: str, password: str, username: str | None = None) -> UserType:
        user = guests.claim_guest_account(info.context.get_user(), email=email, password=password, username=username)
        request = info.context.http_request
        if request is not None:
            auth.update_session_auth_hash(request, user)
        return user

    @mutation(description="Delete your account and everything it owns, files included.")
    def delete_account(self, info: Info, password: str = "") -> Ack:
        accounts.delete_account(info.context.get_user(), password=password)
        request = info.context.http_request
        if request is not None:
            auth.logout(request)
        return Ack(ok=True, message="Your account and its data were deleted.")

    @mutation(description="Import a data export; importing twice creates no duplicates.")
    def import_my_data(self, info: Info, data: JSON) -> ImportResult:
        return ImportResult.of(portability.import_data(info.context.get_user(), data))


ACCOUNT_EVENT_KINDS = {kind.value for kind in AccountEventKind}


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Changes to your account made elsewhere (another tab or device).")
    async def account_events(self, info: Info) -> AsyncGenerator[AccountEvent, None]:
        user = info.context.get_user()
        async with info.context.ws.listen_to_channel("app.event", groups=[events.user_group(user.pk)]) as messages:
            async for message in messages:
                if message.get("kind") in ACCOUNT_EVENT_KINDS:
                    yield AccountEvent(kind=AccountEventKind(message["kind"]))
