"""The four models of the app and how each is reached."""

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


MODELS = (
    ModelInfo("llama-3", "Llama 3", "cloudflare", "Meta Llama 3 8B Instruct on Cloudflare Workers AI.", 2048, False),
    ModelInfo("gpt-3.5-turbo", "GPT-3.5 Turbo", "openai", "OpenAI's fast general-purpose chat model.", 4096, False),
    ModelInfo("gpt-4", "GPT-4", "openai", "OpenAI's most capable model of the four.", 8192, False),
    ModelInfo("rag-faiss", "RAG Knowledge Base", "rag",
              "Answers from your own documents with citations: retrieval over your collections, then "
              "generation by the configured generator.", 4096, True),
)
BY_ID = {m.id: m for m in MODELS}


@dataclass
class Credentials:
    openai_api_key: str = ""
    openai_base_url: str = ""
    cloudflare_account_id: str = ""
    cloudflare_api_token: str = ""
    cloudflare_base_url: str = ""


def availability(model_id: str, creds: Credentials, rag_generator: str) -> tuple[bool, str | None]:
    info = BY_ID[model_id]
    if info.provider == "openai":
        return (True, None) if creds.openai_api_key else (False, "No OpenAI API key is configured.")
    if info.provider == "cloudflare":
        if creds.cloudflare_account_id and creds.cloudflare_api_token:
            return True, None
        return False, "No Cloudflare account id and API token are configured."
    if rag_generator == "extractive":
        return True, None
    ok, reason = availability(rag_generator, creds, "extractive")
    return (True, None) if ok else (True, f"Using the offline extractive generator: {reason}")


def provider_for(model_id: str, creds: Credentials, rag_generator: str = "extractive"):
    """The provider that answers for ``model_id`` (for RAG: its generator)."""
    info = BY_ID[model_id]
    if info.provider == "rag":
        if rag_generator != "extractive" and availability(rag_generator, creds, "extractive")[0]:
            return provider_for(rag_generator, creds)
        return ExtractiveGenerator()
    if info.provider == "openai":
        return OpenAIProvider(model_id, creds.openai_api_key, creds.openai_base_url or None)
    kwargs = {"base_url": creds.cloudflare_base_url} if creds.cloudflare_base_url else {}
    return CloudflareProvider(creds.cloudflare_account_id, creds.cloudflare_api_token, **kwargs)
