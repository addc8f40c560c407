"""Instance-specific rubrics and LLM-as-a-judge, built from SPRI's refine loop.

Instead of one generic rubric for every instruction, the judge writes a 1-5 rubric for *this*
instruction, has a critic check its usefulness and refines it, grades the response with it,
then critiques and refines the grading itself. Both stages are the same draft -> critique ->
refine loop as the SPRI graph (:mod:`spri_graph.loop`):

``prepare -> rubric_draft -> rubric_critique -(refine)-> rubric_refine -> ...``
``-(done)-> judgment_draft -> judgment_critique -(refine)-> judgment_refine -> ...``
``-(done)-> finalize``

:func:`create_rubric_graph` is the rubric stage alone. Two baselines grade in one call, so you
can compare SPRI rubrics against them on your own data: :func:`create_vanilla_judge` (a
generic rubric) and :func:`create_fixed_rubric_judge` (a rubric you give, e.g. a benchmark's
gold rubric per instance).

Rubrics are written in a fixed text layout (see :data:`spri_graph.prompts.RUBRIC_LAYOUT`) and
read by :func:`parse_rubric`. A rubric the model did not write in that layout never stops a
run: whatever text it wrote becomes the criteria, and each score level it left out gets the
generic description of that level from :data:`GENERIC_RUBRIC`, so grading always has a full
1-5 ladder and the rubric critic sees (and can fault) exactly what the grader will use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from pydantic import BaseModel, Field, ValidationError
from typing_extensions import TypedDict

from spri_graph.critique import Critique, Judgment, parse_judgment
from spri_graph.loop import (
    CriticOutput,
    RefineLoop,
    StageUsage,
    _add_usage,
    _Call,
    _empty_usage,
    _Node,
    add_refine_loop,
    context_value,
    default_retry_policy,
    merge_usage,
    validate_loop_settings,
)
from spri_graph.models import ModelSpec, is_local_model, resolve_model, resolve_model_cached
from spri_graph.prompts import JUDGE_PROMPTS, resolve_prompts
from spri_graph.spri import SPRIContext

__all__ = [
    "GENERIC_RUBRIC",
    "FixedRubricInput",
    "JudgeInput",
    "JudgeOutput",
    "JudgeState",
    "Rubric",
    "RubricInput",
    "RubricOutput",
    "create_fixed_rubric_judge",
    "create_judge_graph",
    "create_rubric_graph",
    "create_vanilla_judge",
    "parse_rubric",
]


class Rubric(BaseModel):
    """A 1-5 scoring rubric: a criteria question and what each score level looks like."""

    criteria: str = Field(description="What a response must get right, as one question.")
    score1_description: str = Field(description="What a response that deserves 1 looks like.")
    score2_description: str = Field(description="What a response that deserves 2 looks like.")
    score3_description: str = Field(description="What a response that deserves 3 looks like.")
    score4_description: str = Field(description="What a response that deserves 4 looks like.")
    score5_description: str = Field(description="What a response that deserves 5 looks like.")

    @property
    def descriptions(self) -> tuple[str, str, str, str, str]:
        """The five level descriptions, score 1 first."""
        return (
            self.score1_description,
            self.score2_description,
            self.score3_description,
            self.score4_description,
            self.score5_description,
        )

    def render(self) -> str:
        """The rubric in the text layout the prompts use (and :func:`parse_rubric` reads).

        Example:
            >>> print(GENERIC_RUBRIC.render().splitlines()[1])
            Score 1: The response ignores the instruction, or is wrong, unhelpful or harmful.
        """
        lines = [f"Criteria: {self.criteria}"]
        lines += [f"Score {n}: {text}" for n, text in enumerate(self.descriptions, 1)]
        return "\n".join(lines)


GENERIC_RUBRIC = Rubric(
    criteria="Does the response fulfil the instruction helpfully, accurately and completely?",
    score1_description=("The response ignores the instruction, or is wrong, unhelpful or harmful."),
    score2_description=(
        "The response addresses the instruction only in part, with major errors or omissions."
    ),
    score3_description=(
        "The response addresses the instruction acceptably, with noticeable errors, gaps or "
        "unclear parts."
    ),
    score4_description=(
        "The response fulfils the instruction well, with only minor errors or omissions."
    ),
    score5_description=(
        "The response fulfils the instruction fully, accurately and clearly, with no "
        "meaningful flaws."
    ),
)
"""The vanilla judge's rubric, and the fallback for levels a written rubric leaves out."""

_MARKUP = " \t*_#>|-"
_LEVEL_LINE = re.compile(
    r"^[\s#*_>|-]*(?:score|level)[\s*_]*\[?([1-5])(?!\d)\]?[\s*_]*(?:[:.)=\u2013\u2014-]|points?)?"
    r"[\s*_]*(.*)$",
    re.IGNORECASE,
)
_NUMBERED_LINE = re.compile(r"^[\s#*_>|-]*\(?([1-5])(?!\d)[\s*_]*[:.)\u2013\u2014-][\s*_]*(.*)$")
_CRITERIA_LINE = re.compile(
    r"^[\s#*_>|-]*(?:criteria|criterion)(?:\s+question)?[\s*_]*[:.\u2013\u2014-]?[\s*_]*(.*)$",
    re.IGNORECASE,
)


def _from_json(text: str) -> dict[str, str] | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    fields = ["criteria", *(f"score{n}_description" for n in range(1, 6))]
    found = {key: data[key].strip() for key in fields if isinstance(data.get(key), str)}
    return found or None


def _read_layout(text: str, level_line: re.Pattern[str]) -> dict[str, str]:
    buckets: dict[str, list[str]] = {"preamble": []}
    current = "preamble"
    for line in text.splitlines():
        if level := level_line.match(line):
            current = f"score{level.group(1)}_description"
            buckets[current] = [level.group(2)]
        elif current == "preamble" and (criteria := _CRITERIA_LINE.match(line)):
            current = "criteria"
            buckets[current] = [criteria.group(1)]
        else:
            buckets[current].append(line)
    fields = {
        key: " ".join(part.strip(_MARKUP) for part in lines if part.strip(_MARKUP)).strip()
        for key, lines in buckets.items()
    }
    preamble = fields.pop("preamble")
    if not fields.get("criteria"):
        fields["criteria"] = preamble
    return fields


def parse_rubric(text: str) -> Rubric:
    r"""Read a rubric written in the ``Criteria: ...`` / ``Score 1: ...`` layout.

    Also reads Markdown variants (``**Score 1:**``, ``### Criteria``), ``Score 1 - ...``,
    multi-line level descriptions, a plain ``1.`` .. ``5.`` list when it has all five levels,
    and a JSON object with the :class:`Rubric` field names. Never fails: text outside the
    layout becomes the criteria, and a level the text leaves out gets the generic
    description of that level (from :data:`GENERIC_RUBRIC`).

    Args:
        text: The model's rubric.

    Returns:
        The :class:`Rubric`.

    Example:
        >>> rubric = parse_rubric(
        ...     "Criteria: Is the haiku 5-7-5?\nScore 1: Not a haiku.\n"
        ...     "Score 5: Exactly 5-7-5\nand vivid."
        ... )
        >>> rubric.criteria, rubric.score5_description
        ('Is the haiku 5-7-5?', 'Exactly 5-7-5 and vivid.')
        >>> rubric.score3_description == GENERIC_RUBRIC.score3_description
        True
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    fields = _from_json(text) or _read_layout(text, _LEVEL_LINE)
    if not any(key.startswith("score") for key in fields):
        numbered = _read_layout(text, _NUMBERED_LINE)
        if all(numbered.get(f"score{n}_description") for n in range(1, 6)):
            fields = numbered
    defaults = GENERIC_RUBRIC.model_dump()
    return Rubric(**{key: fields.get(key) or defaults[key] for key in defaults})


def _coerce_rubric(value: Any, field: str) -> Rubric:
    """Accept a :class:`Rubric`, a dict of its fields, or rubric text."""
    if isinstance(value, Rubric):
        return value
    if isinstance(value, Mapping):
        try:
            return Rubric.model_validate(dict(value))
        except ValidationError as exc:
            missing = [".".join(map(str, e["loc"])) for e in exc.errors()]
            raise ValueError(
                f"{field} must have non-empty string fields criteria and "
                f"score1_description..score5_description; bad or missing: {', '.join(missing)}"
            ) from None
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{field} must be non-empty rubric text")
        return parse_rubric(value)
    raise ValueError(
        f"{field} must be a Rubric, a dict of its fields or rubric text, got {type(value).__name__}"
    )


def _render_judgment(judgment: Judgment) -> str:
    score = "none given" if judgment.score is None else f"{judgment.score:g}"
    return f"<feedback>{judgment.feedback}</feedback><score>{score}</score>"


def _message_text(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else message.text()


# --------------------------------------------------------------------------- state


class RubricInput(TypedDict, total=False):
    """Input of :func:`create_rubric_graph`.

    ``reference_answer`` (a response that would score 5) is used only by graphs built with
    ``reference_free=False``, which require it.
    """

    instruction: str
    reference_answer: str | None


class JudgeInput(RubricInput, total=False):
    """Input of the judge graphs: the instruction and the response to grade."""

    response: str


class FixedRubricInput(JudgeInput, total=False):
    """Input of :func:`create_fixed_rubric_judge`: ``rubric`` overrides the factory's rubric.

    ``rubric`` may be a :class:`Rubric`, a dict of its fields, or rubric text.
    """

    rubric: Rubric


class RubricOutput(TypedDict, total=False):
    """Output of :func:`create_rubric_graph`."""

    rubric: Rubric
    rubric_critiques: list[Critique]
    usage: Annotated[dict[str, StageUsage], merge_usage]


class JudgeOutput(RubricOutput, total=False):
    """Output of the judge graphs.

    ``score`` is ``None`` when the final grading carried no readable 1-5 score.
    ``usage`` maps each stage (``"rubric"``, ``"judgment"``) to its model calls and tokens.
    """

    score: float | None
    feedback: str
    judgment_critiques: list[Critique]


class JudgeState(FixedRubricInput, JudgeOutput, total=False):
    """Full state of the judge graphs; ``judgment`` is the grading under refinement."""

    judgment: Judgment


# --------------------------------------------------------------------------- nodes


def _text_field(state: Mapping[str, Any], key: str) -> str:
    value = state.get(key)
    if value is None:
        raise ValueError(f"{key}: missing; pass a non-empty string {key!r}")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _check_context() -> None:
    for key in ("threshold", "max_iterations"):
        value = context_value(key)
        if value is not None:
            validate_loop_settings(**{key: value})
    for key in ("model", "critic_model"):
        value = context_value(key)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"context {key} must be a model string, got {value!r}")
            resolve_model_cached(value, field=key)


def _prepare_node(
    *, with_response: bool, reference_free: bool, rubric: Rubric | None, rubric_from_input: bool
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def prepare(state: Mapping[str, Any]) -> dict[str, Any]:
        """Validate the input before any model is called."""
        update: dict[str, Any] = {"instruction": _text_field(state, "instruction")}
        if with_response:
            update["response"] = _text_field(state, "response")
        reference = state.get("reference_answer")
        if not reference_free:
            update["reference_answer"] = _text_field(state, "reference_answer")
        elif reference is not None and not isinstance(reference, str):
            raise ValueError(
                f"reference_answer must be a string or None, got {type(reference).__name__}"
            )
        if rubric_from_input:
            given = state.get("rubric")
            if given is None and rubric is None:
                raise ValueError(
                    "rubric: missing; pass rubric= to create_fixed_rubric_judge or a 'rubric' "
                    "in the input"
                )
            update["rubric"] = rubric if given is None else _coerce_rubric(given, "rubric")
        elif rubric is not None:
            update["rubric"] = rubric
        _check_context()
        return update

    return prepare


def _prompt_inputs(reference_free: bool) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def inputs(state: Mapping[str, Any]) -> dict[str, Any]:
        reference = None if reference_free else state.get("reference_answer")
        rubric = state.get("rubric")
        return {
            "instruction": state["instruction"],
            "response": state.get("response", ""),
            "reference_section": (
                f"\n\n### Reference Answer (Score 5):\n{reference}" if reference else ""
            ),
            "rubric": rubric.render() if isinstance(rubric, Rubric) else "",
        }

    return inputs


def _finalize(state: Mapping[str, Any]) -> dict[str, Any]:
    judgment: Judgment = state["judgment"]
    return {
        "score": judgment.score,
        "feedback": judgment.feedback,
        "rubric_critiques": list(state.get("rubric_critiques") or []),
        "judgment_critiques": list(state.get("judgment_critiques") or []),
    }


def _grade_node(model: Runnable, prompt: ChatPromptTemplate, reference_free: bool) -> Runnable:
    """One grading call (the baselines): prompt -> model -> :func:`parse_judgment`.

    Built like the refine loop's nodes: the sync and async paths share everything but the
    ``invoke`` / ``ainvoke`` line, and the model call carries the stage's run name and tags.
    """
    inputs = _prompt_inputs(reference_free)

    def call(state: Mapping[str, Any]) -> _Call:
        name = context_value("model")
        return _Call(
            runnable=resolve_model_cached(name, field="model") if name else model,
            messages=prompt.format_messages(**inputs(state)),
            run_name="spri:judgment:grade",
            tags=("spri", "spri:judgment", "spri:judgment:grade"),
            metadata={"spri_stage": "judgment", "spri_step": "grade", "spri_iteration": 0},
        )

    def graded(message: BaseMessage) -> dict[str, Any]:
        return {
            "judgment": parse_judgment(_message_text(message)),
            "usage": {"judgment": _add_usage(_empty_usage(), message, critic=False)},
        }

    def run(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        request = call(state)
        return graded(request.runnable.invoke(request.messages, request.config(config)))

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        request = call(state)
        return graded(await request.runnable.ainvoke(request.messages, request.config(config)))

    return _Node("grade", run, arun)


# --------------------------------------------------------------------------- factories


def _check_reference_free(reference_free: Any) -> None:
    if not isinstance(reference_free, bool):
        raise ValueError(f"reference_free must be True or False, got {reference_free!r}")


def _build_refined(
    model: ModelSpec,
    *,
    critic_model: ModelSpec,
    threshold: int,
    max_iterations: int,
    reference_free: bool,
    critic_output: CriticOutput | None,
    critic_parse_retries: int,
    prompts: Mapping[str, ChatPromptTemplate | str] | None,
    retry_policy: RetryPolicy | None,
    with_judgment: bool,
) -> StateGraph:
    validate_loop_settings(
        threshold=threshold,
        max_iterations=max_iterations,
        critic_output="text" if critic_output is None else critic_output,
        critic_parse_retries=critic_parse_retries,
    )
    _check_reference_free(reference_free)
    stage_prompts = resolve_prompts(JUDGE_PROMPTS, prompts)
    base = resolve_model(model, field="model")
    critic = None if critic_model is None else resolve_model(critic_model, field="critic_model")
    if critic_output is None:
        critic_output = "structured" if is_local_model(critic or base) else "text"
    policy = default_retry_policy() if retry_policy is None else retry_policy
    inputs = _prompt_inputs(reference_free)

    def loop(
        name: str,
        candidate_key: str,
        critiques_key: str,
        parse: Callable[[BaseMessage], Any],
        render: Callable[[Any], str],
    ) -> RefineLoop:
        return RefineLoop(
            name=name,
            model=base,
            critic_model=critic,
            draft_prompt=stage_prompts[f"{name}_draft"],
            critique_prompt=stage_prompts[f"{name}_critique"],
            refine_prompt=stage_prompts[f"{name}_refine"],
            candidate_key=candidate_key,
            critiques_key=critiques_key,
            prompt_inputs=inputs,
            parse_candidate=parse,
            render_candidate=render,
            threshold=threshold,
            max_iterations=max_iterations,
            critic_output=critic_output,
            critic_parse_retries=critic_parse_retries,
            resolve_model=resolve_model_cached,
        )

    builder = StateGraph(
        JudgeState,
        context_schema=SPRIContext,
        input_schema=JudgeInput if with_judgment else RubricInput,
        output_schema=JudgeOutput if with_judgment else RubricOutput,
    )
    builder.add_node(
        "prepare",
        _prepare_node(
            with_response=with_judgment,
            reference_free=reference_free,
            rubric=None,
            rubric_from_input=False,
        ),
    )
    judgment = loop(
        "judgment",
        "judgment",
        "judgment_critiques",
        lambda message: parse_judgment(_message_text(message)),
        _render_judgment,
    )
    rubric = loop(
        "rubric",
        "rubric",
        "rubric_critiques",
        lambda message: parse_rubric(_message_text(message)),
        Rubric.render,
    )
    builder.add_edge(START, "prepare")
    builder.add_edge(
        "prepare",
        add_refine_loop(
            builder,
            rubric,
            then=judgment.nodes[0] if with_judgment else END,
            retry_policy=policy,
        ),
    )
    if with_judgment:
        add_refine_loop(builder, judgment, then="finalize", retry_policy=policy)
        builder.add_node("finalize", _finalize)
        builder.add_edge("finalize", END)
    return builder


def create_judge_graph(
    model: ModelSpec = None,
    *,
    critic_model: ModelSpec = None,
    threshold: int = 4,
    max_iterations: int = 4,
    reference_free: bool = True,
    critic_output: CriticOutput | None = None,
    critic_parse_retries: int = 1,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
    r"""Create the SPRI judge: an instance-specific rubric, then a refined grading with it.

    The rubric stage drafts a rubric for the instruction, has the critic judge its
    usefulness and refines it while the score is below ``threshold``. The judgment stage
    grades the response against the rubric (``<feedback>...</feedback><score>N</score>``,
    read by :func:`spri_graph.parse_judgment`), has the critic check that the grading
    follows the rubric, and refines the grading the same way. A grading with no readable
    score gets ``score=None`` unless a refinement fixes it.

    Args:
        model: Model that writes rubrics and gradings: a chat model or a model string
            (``"openai:gpt-4o-mini"``, ``"local"``, ...); ``None`` means ``$SPRI_MODEL`` or the
            embedded local model.
        critic_model: Critic model; defaults to ``model``.
        threshold: Critique score (1-5) that accepts a rubric or a grading.
        max_iterations: Most critiques per stage (at least 1).
        reference_free: Grade without a reference answer (the default). With ``False``,
            every input must carry a non-empty ``reference_answer``, shown to the rubric
            writer, the grader and the critic as a response that would score 5; with
            ``True`` a ``reference_answer`` in the input is not used.
        critic_output: ``"text"`` parses ``Feedback: ... [RESULT] N``; ``"structured"`` uses
            ``with_structured_output``. ``None`` means ``"text"``, except ``"structured"``
            for the embedded local model.
        critic_parse_retries: Re-asks, with a format reminder, when a text critique has no
            readable score.
        prompts: Overrides keyed ``rubric_draft``, ``rubric_critique``, ``rubric_refine``,
            ``judgment_draft``, ``judgment_critique``, ``judgment_refine``
            (see :data:`spri_graph.prompts.JUDGE_PROMPTS`).
        retry_policy: Retry policy for transient model errors; defaults to
            :func:`spri_graph.default_retry_policy`.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with input ``instruction``,
        ``response`` and optional ``reference_answer``, and output ``rubric``, ``score``,
        ``feedback``, ``rubric_critiques``, ``judgment_critiques`` and ``usage``. Per-run
        settings go through ``context=SPRIContext(...)``.

    Raises:
        ValueError: If a setting is out of range or a model string cannot be resolved; at
            run time, before any model call, if ``instruction`` or ``response`` is missing
            or empty.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is 2+2 answered correctly?\nScore 1: Wrong.\nScore 2: Wrong but "
        ...     "close.\nScore 3: Right, no reasoning.\nScore 4: Right, brief.\n"
        ...     "Score 5: Right and explained.",
        ...     "Feedback: Specific and checkable. [RESULT] 5",
        ...     "<feedback>Correct, with no explanation.</feedback><score>3</score>",
        ...     "Feedback: Applies level 3 exactly. [RESULT] 5",
        ... ]))
        >>> out = create_judge_graph(model).compile().invoke(
        ...     {"instruction": "What is 2+2?", "response": "4"}
        ... )
        >>> out["score"], out["feedback"], out["rubric"].score3_description
        (3.0, 'Correct, with no explanation.', 'Right, no reasoning.')
    """
    return _build_refined(
        model,
        critic_model=critic_model,
        threshold=threshold,
        max_iterations=max_iterations,
        reference_free=reference_free,
        critic_output=critic_output,
        critic_parse_retries=critic_parse_retries,
        prompts=prompts,
        retry_policy=retry_policy,
        with_judgment=True,
    )


def create_rubric_graph(
    model: ModelSpec = None,
    *,
    critic_model: ModelSpec = None,
    threshold: int = 4,
    max_iterations: int = 4,
    reference_free: bool = True,
    critic_output: CriticOutput | None = None,
    critic_parse_retries: int = 1,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
    r"""Create the rubric stage alone: a refined 1-5 rubric for an instruction.

    Use it to write rubrics once and grade many responses with
    :func:`create_fixed_rubric_judge`. Arguments are those of :func:`create_judge_graph`.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with input ``instruction`` (and
        ``reference_answer``) whose output holds ``rubric``, ``rubric_critiques``, ``usage``.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> model = GenericFakeChatModel(messages=iter([
        ...     "Criteria: Is it polite?\nScore 1: Rude.\nScore 5: Warm.", "Fine. [RESULT] 4"
        ... ]))
        >>> out = create_rubric_graph(model).compile().invoke({"instruction": "Say hi."})
        >>> out["rubric"].criteria, out["rubric"].score5_description
        ('Is it polite?', 'Warm.')
    """
    return _build_refined(
        model,
        critic_model=critic_model,
        threshold=threshold,
        max_iterations=max_iterations,
        reference_free=reference_free,
        critic_output=critic_output,
        critic_parse_retries=critic_parse_retries,
        prompts=prompts,
        retry_policy=retry_policy,
        with_judgment=False,
    )


def _build_single(
    model: ModelSpec,
    *,
    rubric: Rubric | None,
    rubric_from_input: bool,
    reference_free: bool,
    prompts: Mapping[str, ChatPromptTemplate | str] | None,
    retry_policy: RetryPolicy | None,
) -> StateGraph:
    _check_reference_free(reference_free)
    prompt = resolve_prompts({"judgment_draft": JUDGE_PROMPTS["judgment_draft"]}, prompts)[
        "judgment_draft"
    ]
    base = resolve_model(model, field="model")
    policy = default_retry_policy() if retry_policy is None else retry_policy
    builder = StateGraph(
        JudgeState,
        context_schema=SPRIContext,
        input_schema=FixedRubricInput if rubric_from_input else JudgeInput,
        output_schema=JudgeOutput,
    )
    builder.add_node(
        "prepare",
        _prepare_node(
            with_response=True,
            reference_free=reference_free,
            rubric=rubric,
            rubric_from_input=rubric_from_input,
        ),
    )
    builder.add_node("grade", _grade_node(base, prompt, reference_free), retry_policy=policy)
    builder.add_node("finalize", _finalize)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "grade")
    builder.add_edge("grade", "finalize")
    builder.add_edge("finalize", END)
    return builder


def create_vanilla_judge(
    model: ModelSpec = None,
    *,
    reference_free: bool = True,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
    """Create the vanilla baseline: one absolute grading against :data:`GENERIC_RUBRIC`.

    This is the generic LLM-as-a-judge that instance-specific rubrics are compared with.

    Args:
        model: The judge model (same forms as :func:`create_judge_graph`).
        reference_free: As in :func:`create_judge_graph`.
        prompts: Override for ``judgment_draft``.
        retry_policy: Retry policy for transient model errors.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input and output of
        :func:`create_judge_graph` (the critiques are empty lists).

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> reply = "<feedback>Fine.</feedback><score>4</score>"
        >>> model = GenericFakeChatModel(messages=iter([reply]))
        >>> out = create_vanilla_judge(model).compile().invoke(
        ...     {"instruction": "Say hi.", "response": "Hello!"}
        ... )
        >>> out["score"], out["rubric"] == GENERIC_RUBRIC
        (4.0, True)
    """
    return _build_single(
        model,
        rubric=GENERIC_RUBRIC,
        rubric_from_input=False,
        reference_free=reference_free,
        prompts=prompts,
        retry_policy=retry_policy,
    )


def create_fixed_rubric_judge(
    model: ModelSpec = None,
    *,
    rubric: Rubric | Mapping[str, str] | str | None = None,
    reference_free: bool = True,
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StateGraph:
    r"""Create the fixed-rubric baseline: one absolute grading against a given rubric.

    Give one rubric for every input here, or a ``rubric`` per input (e.g. a benchmark's
    hand-written rubric for each instance), which overrides this one.

    Args:
        model: The judge model (same forms as :func:`create_judge_graph`).
        rubric: A :class:`Rubric`, a dict of its fields, or rubric text in the
            ``Criteria:`` / ``Score N:`` layout; ``None`` requires a rubric in every input.
        reference_free: As in :func:`create_judge_graph`.
        prompts: Override for ``judgment_draft``.
        retry_policy: Retry policy for transient model errors.

    Returns:
        An uncompiled :class:`~langgraph.graph.StateGraph` with the input of
        :func:`create_judge_graph` plus an optional ``rubric``, and its output.

    Raises:
        ValueError: If ``rubric`` is malformed; at run time, if neither the factory nor the
            input gives a rubric.

    Example:
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> reply = "<feedback>Warm.</feedback><score>5</score>"
        >>> model = GenericFakeChatModel(messages=iter([reply]))
        >>> judge = create_fixed_rubric_judge(model, rubric="Criteria: Polite?\nScore 5: Warm.")
        >>> judge.compile().invoke({"instruction": "Say hi.", "response": "Hello!"})["score"]
        5.0
    """
    fixed = None if rubric is None else _coerce_rubric(rubric, "rubric")
    return _build_single(
        model,
        rubric=fixed,
        rubric_from_input=True,
        reference_free=reference_free,
        prompts=prompts,
        retry_policy=retry_policy,
    )
