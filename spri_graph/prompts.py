r"""Default prompts for every SPRI stage.

Each stage of the refine loop has three prompts: ``draft`` (first candidate), ``critique``
(the critic's grading, ending in ``[RESULT] N``) and ``refine`` (rewrite the candidate from
the critique's feedback). Prompts are :class:`~langchain_core.prompts.ChatPromptTemplate`
objects keyed ``"<stage>_<step>"``, e.g. ``"principles_draft"``; pass replacements through
the ``prompts=`` argument of the graph factories.

Variables available to the SPRI prompts:

* ``query`` - the user's question.
* ``goal_section`` - ``"\n### Response Goal: ..."`` when a goal is set, else ``""``.
* ``examples_section`` - the few-shot seed examples, rendered, or ``""``.
* ``principles`` - the current principles.
* ``response`` - the current response (response stage).
* ``candidate`` - the candidate under critique or refinement (any stage).
* ``feedback`` - the critic's feedback (refine prompts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from langchain_core.prompts import ChatPromptTemplate

__all__ = [
    "CRITIQUE_FORMAT",
    "FORMAT_REMINDER",
    "SPRI_PROMPTS",
    "SeedExample",
    "format_seed_examples",
    "resolve_prompts",
]

SeedExample = Mapping[str, str]
"""A few-shot example for the principle writer: ``{"query": ..., "principles": ...}``."""

CRITIQUE_FORMAT = (
    "### Task Description:\n"
    "You will be given an instruction to evaluate, the output to evaluate and a score rubric.\n"
    "1. Write concise feedback that judges the output strictly against the score rubric, "
    "not in general.\n"
    "2. Then give an integer score from 1 to 5, taken from the rubric.\n"
    '3. Use exactly this format: "Feedback: (your feedback) [RESULT] (an integer from 1 to 5)"\n'
    "4. Add no greeting, closing remark or other explanation.\n"
    "5. Keep the feedback under 128 words.\n\n"
)

FORMAT_REMINDER = (
    "Your reply did not end with a score. Reply again in exactly this format: "
    '"Feedback: (your feedback) [RESULT] (an integer from 1 to 5)".'
)

_PRINCIPLE_ROLE = (
    "### Role: You write principles that steer answers to questions. Given a question, write "
    "the principles a good answer to it should follow. A principle is a high-level rule about "
    'the answer, not the answer itself; for example: "When answering, do not discriminate by '
    'gender, age or income." Write only the principles, with no introduction, closing or '
    "explanation, and keep them under 128 words."
)
_RESPONSE_ROLE = (
    "### Role: You follow instructions with care. Given a question and principles for the "
    "answer, write an answer to the question that follows those principles closely. Write only "
    "the answer, with no introduction, closing or explanation, and keep it under 128 words."
)

SPRI_PROMPTS: dict[str, ChatPromptTemplate] = {
    "principles_draft": ChatPromptTemplate.from_messages(
        [
            ("system", _PRINCIPLE_ROLE + "{examples_section}"),
            ("human", "### Question: {query}{goal_section}\n### Principles:"),
        ]
    ),
    "principles_critique": ChatPromptTemplate.from_messages(
        [
            (
                "human",
                CRITIQUE_FORMAT
                + "### Instruction to Evaluate:\n"
                + _PRINCIPLE_ROLE.removeprefix("### ")
                + "\n[Question: {query}]{goal_section}\n\n"
                "### Principles to Evaluate:\n{candidate}\n\n"
                "### Score Rubric:\n"
                "How useful are the principles for guiding an answer to the question?\n"
                "Score 1: Not useful: they are unrelated to the question.\n"
                "Score 2: Barely useful: somewhat related, but vague, shallow or hard to apply.\n"
                "Score 3: Somewhat useful: they give the answer moderate direction.\n"
                "Score 4: Useful: clear, relevant and a solid guide to answering; small "
                "improvements would make them stronger.\n"
                "Score 5: Very useful: complete, specific and an excellent guide to answering "
                "this question and others like it.\n\n"
                "### Feedback:",
            ),
        ]
    ),
    "principles_refine": ChatPromptTemplate.from_messages(
        [
            (
                "system",
                "### Role: You write principles that steer answers to questions. Improve the "
                "principles below using the feedback. Write only the improved principles, with "
                "no introduction, closing or explanation, and keep them under 128 words.",
            ),
            (
                "human",
                "### Question: {query}{goal_section}\n### Principles: {candidate}\n"
                "### Feedback: {feedback}\n### Refined Principles:",
            ),
        ]
    ),
    "response_draft": ChatPromptTemplate.from_messages(
        [
            ("system", _RESPONSE_ROLE),
            ("human", "### Question: {query}\n### Principles: {principles}\n\n### Response:"),
        ]
    ),
    "response_critique": ChatPromptTemplate.from_messages(
        [
            (
                "human",
                CRITIQUE_FORMAT
                + "### Instruction to Evaluate:\n"
                + _RESPONSE_ROLE.removeprefix("### ")
                + "\n[Question: {query}]\n[Principles: {principles}]\n\n"
                "### Response to Evaluate:\n{candidate}\n\n"
                "### Score Rubric:\n"
                "How closely does the answer follow the principles?\n"
                "Score 1: It ignores the principles.\n"
                "Score 2: It follows a few principles and misses most.\n"
                "Score 3: It follows about half of the principles.\n"
                "Score 4: It follows most principles, with small gaps.\n"
                "Score 5: It follows every principle fully.\n\n"
                "### Feedback:",
            ),
        ]
    ),
    "response_refine": ChatPromptTemplate.from_messages(
        [
            (
                "system",
                "### Role: You follow instructions with care. Improve the answer below using the "
                "feedback so that it follows the principles more closely. Write only the improved "
                "answer, with no introduction, closing or explanation, and keep it under 128 "
                "words.",
            ),
            (
                "human",
                "### Question: {query}\n### Principles: {principles}\n"
                "### Response: {candidate}\n### Feedback: {feedback}\n### Refined Response:",
            ),
        ]
    ),
}


def format_seed_examples(examples: Sequence[SeedExample] | None) -> str:
    """Render few-shot seed examples for the principle writer's system prompt.

    Args:
        examples: Items with ``"query"`` and ``"principles"`` keys.

    Returns:
        The rendered section, or ``""`` when there are no examples.

    Raises:
        ValueError: If an example lacks a non-empty ``query`` or ``principles``.

    Example:
        >>> print(format_seed_examples([{"query": "Q?", "principles": "Be exact."}]))
        <BLANKLINE>
        Write principles in the style of these examples:
        <BLANKLINE>
        ### Question: Q?
        ### Principles: Be exact.
    """
    if not examples:
        return ""
    blocks = []
    for i, example in enumerate(examples):
        for key in ("query", "principles"):
            value = example.get(key) if isinstance(example, Mapping) else None
            if not isinstance(value, str) or not value.strip():
                raise ValueError(
                    f"seed_examples[{i}] needs a non-empty string {key!r}; got {example!r}"
                )
        blocks.append(f"### Question: {example['query']}\n### Principles: {example['principles']}")
    return "\nWrite principles in the style of these examples:\n\n" + "\n\n".join(blocks)


def resolve_prompts(
    defaults: Mapping[str, ChatPromptTemplate],
    overrides: Mapping[str, ChatPromptTemplate | str] | None,
) -> dict[str, ChatPromptTemplate]:
    """Merge prompt overrides into the defaults, checking keys and variables.

    A string override becomes a one-message (human) prompt.

    Args:
        defaults: The stage prompts to start from.
        overrides: Replacements keyed like ``defaults``.

    Returns:
        The merged prompts.

    Raises:
        ValueError: If a key is unknown or an override is neither a string nor a
            ``ChatPromptTemplate``.
    """
    merged = dict(defaults)
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ValueError(
                f"prompts: unknown prompt {key!r}; expected one of {', '.join(sorted(defaults))}"
            )
        if isinstance(value, str):
            value = ChatPromptTemplate.from_messages([("human", value)])
        if not isinstance(value, ChatPromptTemplate):
            raise ValueError(
                f"prompts[{key!r}] must be a str or ChatPromptTemplate, got {type(value).__name__}"
            )
        merged[key] = value
    return merged
