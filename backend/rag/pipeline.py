"""RAG building blocks: query rewriting, the prompt, groundedness (retrieval: ``retrieval.py``).

Plain functions over plain data; the chats service feeds them from the database.
"""

import re
from dataclasses import dataclass

from .providers import ChatMessage, content_words, split_sentences

# --- query rewriting ------------------------------------------------------------------------

STARTERS = re.compile(r"^(and|also|then|so|what about|how about|and what|but)\b", re.IGNORECASE)
PRONOUNS = re.compile(r"\b(it|its|they|them|their|this|that|these|those|he|she|him|her|the same)\b", re.IGNORECASE)


def is_follow_up(question: str) -> bool:
    question = question.strip()
    return bool(STARTERS.match(question) or PRONOUNS.search(question) or len(question.split()) <= 3)


def rewrite_follow_up(question: str, history: list[ChatMessage]) -> str:
    """A standalone query: a follow-up (pronouns, "and what about...", very short) borrows the
    previous question's content words; a question that stands on its own is left alone."""
    previous = next((m.content for m in reversed(history) if m.role == "user"), None)
    if not previous or not is_follow_up(question):
        return question
    missing = [w for w in content_words(previous) if w not in content_words(question)]
    if not missing:
        return question
    return f"{question} ({' '.join(sorted(missing))})"


def query_variants(query: str) -> list[str]:
    """Phrasings for multi-query retrieval, made without a model."""
    words = content_words(query)
    variants = [query]
    if words:
        variants.append(" ".join(sorted(words)))
    stripped = re.sub(r"^(what|how|why|when|where|who|which|is|are|does|do|can)\b\s*", "", query.strip(),
                      flags=re.IGNORECASE).rstrip("?")
    if stripped and stripped not in variants:
        variants.append(stripped)
    return variants


# --- prompt ---------------------------------------------------------------------------------

SYSTEM_TEMPLATE = (
    "You are a helpful assistant answering from the user's own documents.\n"
    "Base your answer only on the context below. If the context does not contain the answer, say so "
    "plainly instead of guessing. Cite the passages you use as [n], with n the passage number.\n\n"
    "Context:\n{context}"
)


@dataclass
class Passage:
    number: int
    text: str
    title: str
    page: int | None


def format_context(passages: list[Passage], include_metadata: bool = True) -> str:
    blocks = []
    for p in passages:
        head = f"[{p.number}]"
        if include_metadata:
            head += f" {p.title}" + (f", page {p.page}" if p.page else "")
        blocks.append(f"{head}\n{p.text}")
    return "\n\n".join(blocks)


def build_rag_messages(question: str, history: list[ChatMessage], passages: list[Passage], *,
                       system_prompt: str = "", include_metadata: bool = True) -> list[ChatMessage]:
    system = SYSTEM_TEMPLATE.format(context=format_context(passages, include_metadata))
    if system_prompt:
        system = system_prompt.strip() + "\n\n" + system
    return [ChatMessage("system", system), *history, ChatMessage("user", question)]


def fit_budget(passages: list[Passage], budget_tokens: int) -> list[Passage]:
    """Keep the best passages whose words fit the context window budget."""
    kept, used = [], 0
    for p in passages:
        cost = len(p.text.split()) * 4 // 3 + 8
        if kept and used + cost > budget_tokens:
            break
        kept.append(p)
        used += cost
    return kept


# --- groundedness ---------------------------------------------------------------------------

CITATION = re.compile(r"\[(\d+)\]")


def _stems(text: str) -> set[str]:
    import Stemmer

    global _STEMMER
    if _STEMMER is None:
        _STEMMER = Stemmer.Stemmer("english")
    return set(_STEMMER.stemWords(sorted(content_words(text))))


_STEMMER = None


def term_coverage(question: str, passage: str) -> float:
    """Share of the question's content words (stemmed, stop words aside) found in the passage."""
    wanted = _stems(question)
    return len(wanted & _stems(passage)) / len(wanted) if wanted else 0.0


LEXICAL_COVERAGE = 0.75  # share of the question's content words a passage holds to count as evidence
LEXICAL_FLOOR = 0.15  # ... provided it is not unrelated to the question


def relevant(score: float, coverage: float, threshold: float) -> bool:
    """Whether a passage may ground an answer: its similarity reaches the threshold, or it holds
    most of the question's words and is not unrelated. A chunk that covers many topics is less
    similar to any one question than its answer sentence is ("Should errors pass silently?" scores
    0.25 against a chunk of the Zen of Python); its words still say it answers (bench/refusal.py)."""
    return score >= threshold or (coverage >= LEXICAL_COVERAGE and score >= LEXICAL_FLOOR)


def cited(answer: str) -> set[int]:
    """The passage numbers an answer cites ("[2]")."""
    return {int(n) for n in CITATION.findall(answer)}


def groundedness(answer: str, passages: dict[int, str], min_overlap: float = 0.5) -> tuple[float, list[str]]:
    """Share of the answer's sentences supported by the passages they cite, and those that are not.

    A sentence is supported when it cites at least one passage and at least ``min_overlap`` of its
    content words appear in the cited passages.
    """
    sentences = [s for s in split_sentences(answer) if content_words(CITATION.sub("", s))]
    if not sentences:
        return 0.0, []
    unsupported = []
    for sentence in sentences:
        cited = [int(n) for n in CITATION.findall(sentence) if int(n) in passages]
        words = content_words(CITATION.sub("", sentence))
        source = set().union(*(content_words(passages[n]) for n in cited)) if cited else set()
        if not cited or len(words & source) / len(words) < min_overlap:
            unsupported.append(re.sub(r"\s+([.!?])", r"\1", CITATION.sub("", sentence)).strip())
    return (len(sentences) - len(unsupported)) / len(sentences), unsupported
