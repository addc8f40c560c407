r"""Prompt frames a model copied into its reply, and the cleaner that takes them out.

A small chat model shown a prompt laid out under headings (``### Question:``,
``Principles for the answer:``) often writes the same layout back: its answer opens with
``### Response:`` or ``Respond:``, restates ``### Question: ...`` on its first line, or goes
on past the answer into a new ``### Question:`` or ``### Refined Response:`` frame of its
own. :func:`strip_frames` takes out exactly those frames and nothing else. It knows only the
headings of the prompts the model saw (:func:`prompt_headings`, read from the prompt
templates; the SPRI prompts' are :func:`~spri_graph.engine.prompts.spri_headings`), and a
reply without such a heading at the start of a line comes back as it went in (up to
:func:`~spri_graph.readers.scores.clean_text`'s trimming).

A heading is matched by its words' stems (their first six letters), so ``Respond:`` and
``### Principle:`` are read as the ``Response`` and ``Principles`` headings, and a heading
may follow one qualifying word (``### Refined Response:``, ``The Principle:``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from langchain_core.prompts import ChatPromptTemplate

from spri_graph.readers.scores import clean_text

__all__ = ["Headings", "prompt_headings", "strip_frames"]

_STEM = 6
_LABEL = r"[A-Z][A-Za-z]*(?: [A-Za-z]+){0,5}"
# A heading in a prompt template: at a line start, after "###" or "[", and before ":".
_TEMPLATE_HEADING = re.compile(rf"(?:^|\n)(?:#+ *|\[)?({_LABEL}) ?:(?: *\{{(\w+)\}})?")
# A heading the model wrote: at a line start, after Markdown marks, before ":".
_REPLY_HEADING = re.compile(
    r"^[ \t]*(#+[ \t]*|[*_]{1,2}|\[)?[ \t]*([A-Za-z]+(?: [A-Za-z]+){0,5})"
    r"[ \t]*[*_]{0,2}[ \t]*:[*_]{0,2}[ \t]*",
    re.MULTILINE,
)


def _stems(label: str) -> tuple[str, ...]:
    return tuple(word[:_STEM].lower() for word in label.split())


class Headings:
    """The headings of a set of prompts, as word stems.

    Attributes:
        heads: Stems of the word each heading starts with (``questi``, ``princi``...): a
            line opening with one of them starts a frame.
        words: Stems of every word of five letters or more in the headings (``answer`` of
            ``Principles for the answer``): the reply may open with one as its label.
        echoed: Stems of the headings that introduce an input on their line (the question,
            the feedback): a reply that opens with one restates that input.
        labels: Every heading in full, as its words' stems.
    """

    def __init__(
        self,
        heads: Iterable[str],
        words: Iterable[str],
        echoed: Iterable[str],
        labels: Iterable[tuple[str, ...]] = (),
    ) -> None:
        self.heads = frozenset(heads)
        self.words = frozenset(words) | self.heads
        self.echoed = frozenset(echoed)
        self.labels = frozenset(labels)

    def head(self, label: str, *, opening: bool = False) -> str | None:
        """The heading ``label`` names, if any, as a stem.

        A label names a heading when it is the heading in full (the stem of its first word)
        or one of its words with at most one qualifier (that word's stem).

        Args:
            label: The words before a colon at the start of a line.
            opening: Whether the label opens the reply, where any heading word counts.
        """
        stems = _stems(label)
        if stems in self.labels:
            return stems[0]
        if 1 <= len(stems) <= 2 and stems[-1] in (self.words if opening else self.heads):
            return stems[-1]
        return None


def prompt_headings(prompts: Iterable[ChatPromptTemplate], extra: Iterable[str] = ()) -> Headings:
    r"""Read the headings of prompts (``### Question: {query}``, ``Principles for the answer:``).

    Args:
        prompts: The prompts whose replies will be cleaned.
        extra: Text of sections filled in at run time (e.g. the goal section).

    Returns:
        The :class:`Headings` of the prompts and sections.

    Example:
        >>> prompt = ChatPromptTemplate.from_messages([("human", "### Question: {query}")])
        >>> headings = prompt_headings([prompt], extra=["### Response Goal:\n{goal}"])
        >>> sorted(headings.heads), sorted(headings.echoed)
        (['questi', 'respon'], ['questi'])
        >>> sorted(headings.words)
        ['questi', 'respon']
    """
    texts = [
        str(message.content)
        for prompt in prompts
        for message in prompt.format_messages(
            **{name: "{" + name + "}" for name in prompt.input_variables}
        )
    ]
    heads: set[str] = set()
    words: set[str] = set()
    echoed: set[str] = set()
    labels: set[tuple[str, ...]] = set()
    for text in [*texts, *extra]:
        for match in _TEMPLATE_HEADING.finditer(text):
            stems = _stems(match.group(1))
            labels.add(stems)
            heads.add(stems[0])
            words.update(stem for stem in stems if len(stem) >= 5)
            if match.group(2) not in (None, "candidate"):
                echoed.add(stems[0])
    return Headings(heads, words, echoed, labels)


def _labels_item(body: str, heading: re.Match[str]) -> bool:
    """Whether a heading labels an item on its own line: bare, with text after the colon."""
    return not heading.group(1) and bool(body[heading.end() :].partition("\n")[0].strip())


def strip_frames(text: str, headings: Headings, *, writing: str = "") -> str:
    r"""``text`` without the prompt frames a model copied into it.

    Three kinds of frame go: a heading that opens the reply (``### Response:``,
    ``Respond:``), the first line when it restates an input such as the question
    (``### Question: ...``) or the feedback, and
    everything from a later line that opens a new frame with a heading of the prompts
    (``### Question:``, ``### Refined Response:``). A reply that is frames alone keeps its
    text with the headings taken off.

    The heading of what the reply is (``writing``, e.g. ``"principles"``) may also label
    the reply's own items (``Principle: ...`` on each line): written bare with its item
    after it, it is kept; as a Markdown heading (``### Principles:``) or alone on its line,
    it is a frame like the others.

    Args:
        text: The model's reply.
        headings: The headings of the prompts the model saw
            (:func:`prompt_headings`; the SPRI prompts':
            :func:`~spri_graph.engine.prompts.spri_headings`).
        writing: The heading of what the reply is; ``""`` when every heading is a frame.

    Returns:
        The reply without frames, trimmed as by
        :func:`~spri_graph.readers.scores.clean_text`.

    Example:
        >>> prompt = ChatPromptTemplate.from_messages(
        ...     [("human", "### Question: {query}\n### Principles:\n{principles}\n### Response:")])
        >>> known = prompt_headings([prompt], extra=["### Refined Response:"])
        >>> strip_frames("### Respond: Tell them early.\n### Refined Response:", known)
        'Tell them early.'
        >>> strip_frames("### Question: How do I rest?\nSleep more.\n#Question: Why?", known)
        'Sleep more.'
        >>> strip_frames("Principle: Be kind.\nPrinciple: Be brief.", known, writing="principles")
        'Principle: Be kind.\nPrinciple: Be brief.'
        >>> strip_frames("Rest first.\n### Step 2: Sleep more.", known)
        'Rest first.\n### Step 2: Sleep more.'
    """
    own = _stems(writing)[-1] if writing.strip() else None
    body = text.strip()
    while opening := _REPLY_HEADING.match(body):
        head = headings.head(opening.group(2), opening=True)
        if head is None or (head == own and not opening.group(1)):
            break
        rest = body[opening.end() :]
        echoes = head in headings.echoed and head != own
        body = (rest.partition("\n")[2] if echoes else rest).strip()
    body = clean_text(body)
    for later in _REPLY_HEADING.finditer(body):
        head = headings.head(later.group(2))
        if later.start() == 0 or head is None or (head == own and _labels_item(body, later)):
            continue
        body = clean_text(body[: later.start()])
        break
    if body:
        return body
    return clean_text(
        _REPLY_HEADING.sub(
            lambda m: "" if headings.head(m.group(2), opening=True) else m.group(0), text
        )
    )
