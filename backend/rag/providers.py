"""Chat model providers behind one small interface: ``astream(messages, params) -> AsyncIterator[str]``.

- OpenAI (GPT-3.5 Turbo, GPT-4, or any OpenAI-compatible server) through langchain-openai.
- Cloudflare Workers AI (Llama 3) over its REST API, streamed as server-sent events with httpx.
- An offline extractive generator that needs no key and no download.

Provider failures become ``ProviderError`` with a stable code. Keys are passed in, never logged.
"""

import json
import re
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
RATE_LIMITED = "RATE_LIMITED"
CONTEXT_TOO_LONG = "CONTEXT_TOO_LONG"
PROVIDER_ERROR = "PROVIDER_ERROR"
AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"


class ProviderError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ChatMessage:
    role: str  # system | user | assistant
    content: str


@dataclass
class Params:
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 1024
    extra: dict = field(default_factory=dict)


class Provider(Protocol):
    name: str

    def astream(self, messages: list[ChatMessage], params: Params) -> AsyncIterator[str]: ...


# --- OpenAI ---------------------------------------------------------------------------------

class OpenAIProvider:
    name = "openai"

    def __init__(self, model: str, api_key: str, base_url: str | None = None, timeout: float = 60):
        self.model, self.api_key, self.base_url, self.timeout = model, api_key, base_url, timeout

    def _client(self, params: Params):
        from langchain_openai import ChatOpenAI

        kwargs = dict(model=self.model, api_key=self.api_key, temperature=params.temperature,
                      max_tokens=params.max_tokens, streaming=True, timeout=self.timeout, max_retries=0)
        if self.base_url:
            kwargs["base_url"] = self.base_url
        if params.top_p is not None:
            kwargs["top_p"] = params.top_p
        return ChatOpenAI(**kwargs)

    async def astream(self, messages: list[ChatMessage], params: Params) -> AsyncIterator[str]:
        import openai
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        lc_messages = [kinds[m.role](content=m.content) for m in messages]
        try:
            async for chunk in self._client(params).astream(lc_messages):
                text = chunk.content if isinstance(chunk.content, str) else ""
                if text:
                    yield text
        except openai.RateLimitError:
            raise ProviderError(RATE_LIMITED, "The model provider is rate limiting requests. Try again shortly.")
        except openai.AuthenticationError:
            raise ProviderError(AUTHENTICATION_FAILED, "The provider rejected the API key.")
        except openai.BadRequestError as exc:
            if "context_length" in str(exc) or "maximum context" in str(exc):
                raise ProviderError(CONTEXT_TOO_LONG, "The conversation is too long for this model. "
                                    "Start a new chat or lower max tokens.")
            raise ProviderError(PROVIDER_ERROR, "The provider refused the request.")
        except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError):
            raise ProviderError(PROVIDER_UNAVAILABLE, "The model provider cannot be reached right now.")
        except openai.APIStatusError:
            raise ProviderError(PROVIDER_ERROR, "The provider returned an error.")


# --- Cloudflare Workers AI ------------------------------------------------------------------

CLOUDFLARE_MODEL = "@cf/meta/llama-3-8b-instruct"


class CloudflareProvider:
    name = "cloudflare"

    def __init__(self, account_id: str, api_token: str, base_url: str = "https://api.cloudflare.com/client/v4",
                 model: str = CLOUDFLARE_MODEL, timeout: float = 60):
        self.account_id, self.api_token, self.base_url = account_id, api_token, base_url.rstrip("/")
        self.model, self.timeout = model, timeout

    async def astream(self, messages: list[ChatMessage], params: Params) -> AsyncIterator[str]:
        import httpx

        url = f"{self.base_url}/accounts/{self.account_id}/ai/run/{self.model}"
        body = {"messages": [{"role": m.role, "content": m.content} for m in messages], "stream": True,
                "max_tokens": params.max_tokens, "temperature": params.temperature}
        if params.top_p is not None:
            body["top_p"] = params.top_p
        headers = {"Authorization": f"Bearer {self.api_token}", "Accept": "text/event-stream"}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                async with client.stream("POST", url, json=body, headers=headers) as response:
                    if response.status_code == 429:
                        raise ProviderError(RATE_LIMITED, "Cloudflare is rate limiting requests. Try again shortly.")
                    if response.status_code in (401, 403):
                        raise ProviderError(AUTHENTICATION_FAILED, "Cloudflare rejected the API token.")
                    if response.status_code == 413 or response.status_code == 400:
                        text = (await response.aread()).decode(errors="replace")
                        if "context" in text.lower() or "too long" in text.lower() or response.status_code == 413:
                            raise ProviderError(CONTEXT_TOO_LONG, "The conversation is too long for this model.")
                        raise ProviderError(PROVIDER_ERROR, "Cloudflare refused the request.")
                    if response.status_code >= 500:
                        raise ProviderError(PROVIDER_UNAVAILABLE, "Cloudflare Workers AI is unavailable right now.")
                    async for line in response.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        try:
                            piece = json.loads(data).get("response", "")
                        except json.JSONDecodeError:
                            continue
                        if piece:
                            yield piece
        except httpx.TransportError:
            raise ProviderError(PROVIDER_UNAVAILABLE, "Cloudflare Workers AI cannot be reached right now.")


# --- offline extractive generator -----------------------------------------------------------

EXTRACTIVE_NOTE = "(Extractive answer: quoted from your documents, no language model was used.)"
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
WORD_RE = re.compile(r"[a-z0-9]+")
STOP = set("a an and are as at be by for from has have how i in is it its of on or that the this to was were "
           "what when where which who why will with do does did can you your about into than then there these "
           "those they them their our we me my not no yes".split())


CITATION_AFTER_STOP = re.compile(r"([.!?])((?:\s*\[\d+\])+)")


def split_sentences(text: str) -> list[str]:
    """Sentences, each keeping the citation marks written after its full stop ("... sugar. [1]")."""
    text = re.sub(r"\s+", " ", text).strip()
    text = CITATION_AFTER_STOP.sub(lambda m: m.group(2).rstrip() + m.group(1), text)
    return [s.strip() for s in SENTENCE_RE.split(text) if len(s.strip()) > 2]


def content_words(text: str) -> set[str]:
    return {w for w in WORD_RE.findall(text.lower()) if w not in STOP and len(w) > 1}


class ExtractiveGenerator:
    """Builds an answer from the retrieved passages' best sentences, citing each one as [n].

    It reads the passages from ``params.extra["passages"]`` (list of texts, numbered from 1) and
    the question from the last user message; with no passages it says it cannot answer.
    """

    name = "extractive"

    def __init__(self, max_sentences: int = 3):
        self.max_sentences = max_sentences

    def answer(self, question: str, passages: list[str]) -> str:
        terms = content_words(question)
        scored = []
        for number, passage in enumerate(passages, start=1):
            for order, sentence in enumerate(split_sentences(passage)):
                overlap = len(terms & content_words(sentence))
                if overlap:
                    scored.append((overlap, -number, -order, sentence, number))
        scored.sort(reverse=True)
        chosen, seen = [], set()
        for _, _, _, sentence, number in scored:
            if sentence in seen:
                continue
            seen.add(sentence)
            chosen.append(f"{sentence} [{number}]")
            if len(chosen) == self.max_sentences:
                break
        if not chosen:
            return "The documents I found do not answer this question. " + EXTRACTIVE_NOTE
        return " ".join(chosen) + "\n\n" + EXTRACTIVE_NOTE

    async def astream(self, messages: list[ChatMessage], params: Params) -> AsyncIterator[str]:
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")
        text = self.answer(question, params.extra.get("passages", []))
        for token in re.findall(r"\S+\s*", text):
            yield token
