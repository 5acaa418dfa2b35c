"""The four models of the app, who may use each, and who writes a RAG answer."""

from dataclasses import dataclass

from .providers import CloudflareProvider, ExtractiveGenerator, OpenAIProvider


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    provider: str
    description: str
    max_tokens: int
    uses_documents: bool


OPENAI, CLOUDFLARE = "openai", "cloudflare"
PROVIDERS = (OPENAI, CLOUDFLARE)  # the providers whose keys a user may store
DEFAULT_MODEL = "gpt-3.5-turbo"  # a new user's default model (and an imported chat's, when unknown)

MODELS = (
    ModelInfo("llama-3", "Llama 3", CLOUDFLARE, "Meta Llama 3 8B Instruct on Cloudflare Workers AI.", 2048, False),
    ModelInfo("gpt-3.5-turbo", "GPT-3.5 Turbo", OPENAI, "OpenAI's fast general-purpose chat model.", 4096, False),
    ModelInfo("gpt-4", "GPT-4", OPENAI, "OpenAI's most capable model of the four.", 8192, False),
    ModelInfo("rag-faiss", "RAG Knowledge Base", "rag",
              "Answers from your own documents with citations: retrieval over your collections, then "
              "generation by the language model you choose (or quotes from the passages when none is "
              "available).", 4096, True),
)
BY_ID = {m.id: m for m in MODELS}
MODEL_IDS = tuple(BY_ID)

EXTRACTIVE = "extractive"  # the offline generator: quotes the passages, needs no key
AUTO = "auto"  # the server's choice, else the first language model available to the user
LANGUAGE_MODELS = tuple(m.id for m in MODELS if m.provider != "rag")
GENERATORS = (*LANGUAGE_MODELS, EXTRACTIVE)
GENERATOR_CHOICES = (AUTO, *GENERATORS)
# Which language model "auto" tries after the user's default model: the cheapest first.
AUTO_ORDER = ("gpt-3.5-turbo", "llama-3", "gpt-4")

# Why a model cannot be used.
NO_KEY = "NO_KEY"  # the provider needs an API key that neither the user nor the server has
NOT_CONFIGURED = "NOT_CONFIGURED"  # the provider's account is not set up on this server or by the user


@dataclass
class Credentials:
    openai_api_key: str = ""
    openai_base_url: str = ""
    cloudflare_account_id: str = ""
    cloudflare_api_token: str = ""
    cloudflare_base_url: str = ""
    own: frozenset = frozenset()  # providers ("openai", "cloudflare") whose key is the user's own


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str | None = None  # NO_KEY | NOT_CONFIGURED
    message: str | None = None


def availability(model_id: str, creds: Credentials) -> Availability:
    """Whether ``model_id`` can answer with these credentials (the RAG model always can)."""
    provider = BY_ID[model_id].provider if model_id in BY_ID else "extractive"
    if provider == OPENAI and not creds.openai_api_key:
        return Availability(False, NO_KEY, "No OpenAI API key: add yours in settings (setProviderKey).")
    if provider == CLOUDFLARE:
        if not creds.cloudflare_account_id:
            return Availability(False, NOT_CONFIGURED, "Cloudflare Workers AI is not configured: add your "
                                "Cloudflare account id and API token in settings (setProviderKey).")
        if not creds.cloudflare_api_token:
            return Availability(False, NO_KEY, "No Cloudflare API token: add yours in settings (setProviderKey).")
    return Availability(True)


def rag_generator(creds: Credentials, *, chosen: str | None, server_default: str, user_default: str | None
                  ) -> tuple[str, Availability]:
    """Who writes a RAG answer, and whether it can: the user's or the chat's choice when it names a
    generator (which may be unavailable: the caller refuses the turn), else the server's default
    when available, else the user's default model, else the first language model available, else
    the extractive generator."""
    if chosen and chosen != AUTO:
        return chosen, availability(chosen, creds)
    if server_default == EXTRACTIVE:
        return EXTRACTIVE, Availability(True)
    candidates = [server_default] if server_default != AUTO else []
    candidates += [user_default] if user_default in LANGUAGE_MODELS else []
    for model_id in (*candidates, *AUTO_ORDER):
        if model_id in LANGUAGE_MODELS and availability(model_id, creds).available:
            return model_id, Availability(True)
    return EXTRACTIVE, Availability(True)


def provider_for(generator: str, creds: Credentials, timeout: float = 60):
    """The provider that writes for ``generator``: a language model's id or ``extractive``."""
    if generator == EXTRACTIVE:
        return ExtractiveGenerator()
    info = BY_ID[generator]
    if info.provider == OPENAI:
        return OpenAIProvider(generator, creds.openai_api_key, creds.openai_base_url or None, timeout=timeout)
    kwargs = {"base_url": creds.cloudflare_base_url} if creds.cloudflare_base_url else {}
    return CloudflareProvider(creds.cloudflare_account_id, creds.cloudflare_api_token, timeout=timeout, **kwargs)
