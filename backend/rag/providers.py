"""Chat model providers behind one small interface: ``astream(messages, params) -> AsyncIterator[str]``.

- OpenAI (GPT-3.5 Turbo, GPT-4, or any OpenAI-compatible server) through langchain-openai.
- Cloudflare Workers AI (Llama 3) over its REST API, streamed as server-sent events with httpx.
- An offline extractive generator that needs no key and no download.

Provider failures become ``ProviderError`` with a code of ``ProviderErrorCode``. Keys are passed
in, never logged. ``timeout`` bounds the wait for the provider: for the connection, and for every
read of the stream (no token within it is PROVIDER_TIMEOUT).
"""

import asyncio
import enum
import json
import re
import weakref
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol


class ProviderErrorCode(str, enum.Enum):
    PROVIDER_AUTH = "PROVIDER_AUTH"  # the provider rejected the key (401, 403)
    RATE_LIMITED = "RATE_LIMITED"  # 429; ``retry_after`` says when to try again, when the provider says
    CONTEXT_TOO_LONG = "CONTEXT_TOO_LONG"  # the conversation does not fit the model's context window
    PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"  # no answer, or no next token, within the timeout
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"  # connection refused or lost, 5xx
    PROVIDER_ERROR = "PROVIDER_ERROR"  # any other refusal or unexpected failure of the provider


PROVIDER_AUTH = ProviderErrorCode.PROVIDER_AUTH.value
RATE_LIMITED = ProviderErrorCode.RATE_LIMITED.value
CONTEXT_TOO_LONG = ProviderErrorCode.CONTEXT_TOO_LONG.value
PROVIDER_TIMEOUT = ProviderErrorCode.PROVIDER_TIMEOUT.value
PROVIDER_UNAVAILABLE = ProviderErrorCode.PROVIDER_UNAVAILABLE.value
PROVIDER_ERROR = ProviderErrorCode.PROVIDER_ERROR.value


class ProviderError(Exception):
    def __init__(self, code: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def retry_after(headers) -> float | None:
    """Seconds to wait from a 429's headers (``retry-after-ms``, ``retry-after`` in seconds or as
    an HTTP date), or None when the provider does not say."""
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            from datetime import datetime, timezone
            from email.utils import parsedate_to_datetime

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def _rate_limited(headers, who: str) -> ProviderError:
    wait = retry_after(headers)
    when = f" Try again in {wait:.0f} s." if wait is not None else " Try again shortly."
    return ProviderError(RATE_LIMITED, f"{who} is rate limiting requests.{when}", retry_after=wait)


CONTEXT_WORDS = ("context_length", "maximum context", "context window", "too long", "too many tokens")


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


# --- server-sent events ---------------------------------------------------------------------------

async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data:`` payloads of a server-sent event stream, up to ``[DONE]`` (both providers)."""
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        yield data


# --- one HTTP client per event loop -----------------------------------------------------------

_http_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def shared_http_client(kind: str, make):
    """The HTTP client of kind ``kind`` for the running event loop, made once by ``make()``.

    A new client builds an SSL context (50 ms of CPU): made per answer, a hundred answers starting
    together waited seconds for their first token. One per loop also keeps connections alive.
    """
    clients = _http_clients.setdefault(asyncio.get_running_loop(), {})
    if kind not in clients:
        clients[kind] = make()
    return clients[kind]


def _openai_http():
    import openai

    return shared_http_client("openai", lambda: openai.DefaultAsyncHttpxClient(
        limits=openai._base_client.httpx2.Limits(max_connections=None, max_keepalive_connections=100)))


# --- OpenAI ---------------------------------------------------------------------------------

class OpenAIProvider:
    """OpenAI's chat completions, streamed, through the official ``openai`` client.

    The client builds and sends the request and turns error statuses into its exceptions (mapped
    to our codes below); the answer's server-sent events are read line by line here. Parsing
    every chunk into the client's objects (or LangChain's, above them) cost 250 (450) µs of CPU
    per token, against ~50 µs for a line and a ``json.loads``: with hundreds of answers at once
    on one process, that difference is the server's capacity (bench/streaming.py).
    """

    name = "openai"

    def __init__(self, model: str, api_key: str, base_url: str | None = None, timeout: float = 60):
        self.model, self.api_key, self.base_url, self.timeout = model, api_key, base_url, timeout

    def _request(self, messages: list[ChatMessage], params: Params) -> dict:
        body = {"model": self.model, "messages": [{"role": m.role, "content": m.content} for m in messages],
                "temperature": params.temperature, "max_tokens": params.max_tokens, "stream": True}
        if params.top_p is not None:
            body["top_p"] = params.top_p
        return body

    async def astream(self, messages: list[ChatMessage], params: Params) -> AsyncIterator[str]:
        import openai
        from openai._base_client import httpx2 as transport  # the HTTP library the client reads with

        client = openai.AsyncOpenAI(api_key=self.api_key, base_url=self.base_url, timeout=self.timeout,
                                    max_retries=0, http_client=_openai_http())
        try:
            # The client's own POST (auth, headers, timeouts, its error classes), not ``create``:
            # ``create`` walks every parameter through its typed-dict transform first, 1.8 ms of CPU
            # per request; a burst of 500 answers starting paid ~1 s of it before first tokens.
            response = await client.post("/chat/completions", body=self._request(messages, params),
                                         cast_to=transport.Response, stream=True,
                                         options={"security": {"bearer_auth": True}})
            try:
                async for data in sse_data(response.aiter_lines()):
                    chunk = json.loads(data)
                    if chunk.get("error"):
                        raise ProviderError(PROVIDER_ERROR, "OpenAI stopped with an error.")
                    choices = chunk.get("choices") or ()
                    text = (choices[0].get("delta") or {}).get("content") if choices else None
                    if text:
                        yield text
            finally:
                await response.aclose()
        except openai.RateLimitError as exc:
            if "insufficient_quota" in str(exc):
                raise ProviderError(PROVIDER_ERROR, "The OpenAI account behind this key has no credit left.")
            raise _rate_limited(getattr(exc.response, "headers", None), "OpenAI")
        except (openai.AuthenticationError, openai.PermissionDeniedError):
            raise ProviderError(PROVIDER_AUTH, "OpenAI rejected the API key. Check the key in your settings.")
        except openai.BadRequestError as exc:
            if any(word in str(exc).lower() for word in CONTEXT_WORDS):
                raise ProviderError(CONTEXT_TOO_LONG, "The conversation is too long for this model. "
                                    "Start a new chat or lower max tokens.")
            raise ProviderError(PROVIDER_ERROR, "OpenAI refused the request.")
        except (openai.APITimeoutError, transport.TimeoutException):  # before APIConnectionError, its base
            raise ProviderError(PROVIDER_TIMEOUT, f"OpenAI did not answer within {self.timeout:g} s.")
        except (openai.APIConnectionError, openai.InternalServerError, transport.TransportError):
            raise ProviderError(PROVIDER_UNAVAILABLE, "OpenAI cannot be reached right now.")
        except openai.APIStatusError:
            raise ProviderError(PROVIDER_ERROR, "OpenAI returned an error.")
        except ValueError:  # a line that is not JSON
            raise ProviderError(PROVIDER_ERROR, "OpenAI sent an answer this server cannot read.")


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
            client = shared_http_client("cloudflare", lambda: httpx.AsyncClient(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100)))
            async with client.stream("POST", url, json=body, headers=headers, timeout=self.timeout) as response:
                if response.status_code == 429:
                    raise _rate_limited(response.headers, "Cloudflare")
                if response.status_code in (401, 403):
                    raise ProviderError(PROVIDER_AUTH, "Cloudflare rejected the API token. Check it in your settings.")
                if response.status_code in (400, 413):
                    text = (await response.aread()).decode(errors="replace").lower()
                    if response.status_code == 413 or any(word in text for word in CONTEXT_WORDS):
                        raise ProviderError(CONTEXT_TOO_LONG, "The conversation is too long for this model. "
                                            "Start a new chat or lower max tokens.")
                    raise ProviderError(PROVIDER_ERROR, "Cloudflare refused the request.")
                if response.status_code >= 500:
                    raise ProviderError(PROVIDER_UNAVAILABLE, "Cloudflare Workers AI is unavailable right now.")
                if response.status_code >= 300:
                    raise ProviderError(PROVIDER_ERROR, "Cloudflare returned an error.")
                async for data in sse_data(response.aiter_lines()):
                    try:
                        piece = json.loads(data).get("response", "")
                    except json.JSONDecodeError:
                        continue
                    if piece:
                        yield piece
        except httpx.TimeoutException:
            raise ProviderError(PROVIDER_TIMEOUT, f"Cloudflare Workers AI did not answer within {self.timeout:g} s.")
        except httpx.TransportError:
            raise ProviderError(PROVIDER_UNAVAILABLE, "Cloudflare Workers AI cannot be reached right now.")


# --- offline extractive generator -----------------------------------------------------------

NO_ANSWER = "The documents I found do not answer this question."
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
    the question from the last user message; when no sentence shares a word with the question it
    refuses with ``params.extra["no_answer"]`` (the app's refusal). The message says which generator
    wrote it; the text carries no note of its own.
    """

    name = "extractive"

    def __init__(self, max_sentences: int = 3):
        self.max_sentences = max_sentences

    def answer(self, question: str, passages: list[str], no_answer: str = NO_ANSWER) -> str:
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
        return " ".join(chosen) if chosen else no_answer

    async def astream(self, messages: list[ChatMessage], params: Params) -> AsyncIterator[str]:
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")
        text = self.answer(question, params.extra.get("passages", []), params.extra.get("no_answer", NO_ANSWER))
        async for token in typed_out(text):
            yield token


WORD_PACE = 0.005  # seconds per word of a text written at once: typed out, faster than anyone reads


async def typed_out(text: str) -> AsyncIterator[str]:
    """``text`` word by word at WORD_PACE: its listeners see words, not one block, and the event
    loop serves others meanwhile."""
    for token in re.findall(r"\S+\s*", text):
        await asyncio.sleep(WORD_PACE)
        yield token
