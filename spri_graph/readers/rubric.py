"""Instance-specific rubrics: the :class:`Rubric` type, its text layout and its readers.

A rubric has a criteria question and one description per score level, on any integer scale
(``(1, 5)`` by default, also e.g. ``(1, 10)`` or ``(0, 1)`` for pass/fail). Rubrics are
written in a fixed text layout (see :func:`spri_graph.engine.prompts.rubric_layout`) and read by
:func:`parse_rubric`, or written as structured output with the fields of
:func:`rubric_schema` and read by :func:`read_rubric_fields`. A rubric the model did not
write in either form never stops a run: whatever text it wrote becomes the criteria, and
each score level it left out gets the generic description of that level
(:func:`generic_rubric`), so grading always has a full ladder and the rubric critic sees
(and can fault) exactly what the grader will use.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from langchain_core.utils.json import parse_partial_json
from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from spri_graph.readers.scores import Scale, check_scale

__all__ = [
    "GENERIC_RUBRIC",
    "Rubric",
    "coerce_rubric",
    "generic_rubric",
    "parse_rubric",
    "read_rubric_fields",
    "rubric_schema",
]

_LEVEL_KEY = re.compile(r"^score(-?\d+)_description$")


def _level(score: int) -> property:
    def description(self: Rubric) -> str:
        try:
            return self.levels[score]
        except KeyError:
            raise AttributeError(
                f"this rubric has no score {score}; its scale is {self.scale}"
            ) from None

    return property(description, doc=f"What a response that deserves {score} looks like.")


class Rubric(BaseModel):
    """A scoring rubric: a criteria question and what each score level looks like.

    Build it with one ``score<N>_description`` field per level (``score1_description`` ..
    ``score5_description`` for the usual 1-5 scale) or with ``levels={score: text}``; the
    levels are consecutive integers, at least two. Dumps use the flat field names, so
    ``Rubric(**rubric.model_dump()) == rubric``.

    Example:
        >>> rubric = Rubric(criteria="Right?", score0_description="No.", score1_description="Yes.")
        >>> rubric.scale, rubric.descriptions, rubric.score1_description
        ((0, 1), ('No.', 'Yes.'), 'Yes.')
        >>> rubric.model_dump()
        {'criteria': 'Right?', 'score0_description': 'No.', 'score1_description': 'Yes.'}
    """

    criteria: str = Field(description="What a response must get right, as one question.")
    levels: dict[int, str] = Field(
        description="What a response that deserves each score looks like, keyed by score."
    )

    score1_description = _level(1)
    score2_description = _level(2)
    score3_description = _level(3)
    score4_description = _level(4)
    score5_description = _level(5)

    @model_validator(mode="before")
    @classmethod
    def _read_flat_levels(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "levels" in data:
            return data
        fields: dict[str, Any] = {}
        levels: dict[int, Any] = {}
        for key, value in data.items():
            level = _LEVEL_KEY.match(key) if isinstance(key, str) else None
            if level:
                levels[int(level.group(1))] = value
            else:
                fields[key] = value
        return {**fields, "levels": levels} if levels else fields

    @field_validator("levels")
    @classmethod
    def _consecutive_levels(cls, levels: dict[int, str]) -> dict[int, str]:
        scores = sorted(levels)
        if len(scores) < 2:
            raise ValueError(f"a rubric needs at least two score levels, got {scores}")
        if scores != list(range(scores[0], scores[-1] + 1)):
            raise ValueError(f"score levels must be consecutive integers, got {scores}")
        return {score: levels[score] for score in scores}

    @model_serializer(mode="wrap")
    def _flat_levels(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if not isinstance(data, dict) or "levels" not in data:
            return data
        data.pop("levels")
        return {**data, **{f"score{n}_description": text for n, text in self.levels.items()}}

    @property
    def scale(self) -> Scale:
        """The ``(low, high)`` scale of the levels."""
        scores = list(self.levels)
        return scores[0], scores[-1]

    @property
    def descriptions(self) -> tuple[str, ...]:
        """The level descriptions, lowest score first."""
        return tuple(self.levels.values())

    def render(self) -> str:
        """The rubric in the text layout the prompts use (and :func:`parse_rubric` reads).

        Example:
            >>> print(GENERIC_RUBRIC.render().splitlines()[1])
            Score 1: The response ignores the instruction, or is wrong, unhelpful or harmful.
        """
        lines = [f"Criteria: {self.criteria}"]
        lines += [f"Score {n}: {text}" for n, text in self.levels.items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------- generic rubric

_GENERIC_CRITERIA = "Does the response fulfil the instruction helpfully, accurately and completely?"
_GENERIC_BANDS = (
    "The response ignores the instruction, or is wrong, unhelpful or harmful.",
    "The response addresses the instruction only in part, with major errors or omissions.",
    "The response addresses the instruction acceptably, with noticeable errors, gaps or "
    "unclear parts.",
    "The response fulfils the instruction well, with only minor errors or omissions.",
    "The response fulfils the instruction fully, accurately and clearly, with no meaningful flaws.",
)
_GENERIC_PASS_FAIL = (
    "Fail: the response does not fulfil the instruction; it is wrong, incomplete, unhelpful "
    "or harmful.",
    "Pass: the response fulfils the instruction correctly and completely.",
)
_A_STEP_UP = " It is a little better than the level below."


@functools.lru_cache(maxsize=32)
def _generic_levels(scale: Scale) -> tuple[str, ...]:
    low, high = scale
    count = high - low + 1
    if count == 2:
        return _GENERIC_PASS_FAIL
    texts: list[str] = []
    bands: list[int] = []
    for i in range(count):
        band = round(i * (len(_GENERIC_BANDS) - 1) / (count - 1))
        text = _GENERIC_BANDS[band]
        texts.append(text + _A_STEP_UP if bands and bands[-1] == band else text)
        bands.append(band)
    return tuple(texts)


def generic_rubric(scale: Scale = (1, 5)) -> Rubric:
    """The generic rubric on ``scale``: the vanilla judge's, and the fallback for levels.

    On 1-5 it is :data:`GENERIC_RUBRIC`; a two-level scale gets fail / pass descriptions,
    and other scales spread the five generic descriptions over their levels.

    Raises:
        ValueError: If ``scale`` is not two integers ``(low, high)`` with ``low < high``.

    Example:
        >>> print(generic_rubric((0, 1)).render())
        Criteria: Does the response fulfil the instruction helpfully, accurately and completely?
        Score 0: Fail: the response does not fulfil the instruction; it is wrong, incomplete, unhelpful or harmful.
        Score 1: Pass: the response fulfils the instruction correctly and completely.
    """  # noqa: E501
    low, high = check_scale(scale)
    texts = _generic_levels((low, high))
    return Rubric(
        criteria=_GENERIC_CRITERIA, levels=dict(zip(range(low, high + 1), texts, strict=True))
    )


GENERIC_RUBRIC = generic_rubric((1, 5))
"""The vanilla judge's 1-5 rubric, and the fallback for levels a written rubric leaves out."""


# --------------------------------------------------------------------------- reading

_MARKUP = " \t*_#>|-"
_LEVEL_LINE = re.compile(
    r"^[\s#*_>|-]*(?:score|level)[\s*_]*\[?(-?\d+)(?!\d)\]?[\s*_]*"
    r"(?:[:.)=\u2013\u2014-]|points?)?[\s*_]*(.*)$",
    re.IGNORECASE,
)
_NUMBERED_LINE = re.compile(r"^[\s#*_>|-]*\(?(-?\d+)(?!\d)[\s*_]*[:.)\u2013\u2014-][\s*_]*(.*)$")
_CRITERIA_LINE = re.compile(
    r"^[\s#*_>|-]*(?:criteria|criterion)(?:\s+question)?[\s*_]*[:.\u2013\u2014-]?[\s*_]*(.*)$",
    re.IGNORECASE,
)


_STRAY_SEPARATOR = re.compile(r"^(?:[,;.:]+\s+)+")


def _trimmed(text: str) -> str:
    """A field's text without surrounding space or a stray leading separator (``". Text"``)."""
    return _STRAY_SEPARATOR.sub("", text.strip())


def _field_names(scale: Scale) -> list[str]:
    return ["criteria", *(f"score{n}_description" for n in range(scale[0], scale[1] + 1))]


def _known_fields(data: Any, scale: Scale) -> dict[str, str]:
    """The rubric fields of a dict (flat names, or ``levels`` keyed by score) on ``scale``."""
    if not isinstance(data, Mapping):
        return {}
    flat = dict(data)
    levels = flat.pop("levels", None)
    if isinstance(levels, Mapping):
        flat.update({f"score{str(n).strip()}_description": text for n, text in levels.items()})
    return {
        key: _trimmed(flat[key])
        for key in _field_names(scale)
        if isinstance(flat.get(key), str) and _trimmed(flat[key])
    }


def _from_json(text: str, scale: Scale) -> dict[str, str]:
    start, end = text.find("{"), text.rfind("}")
    if start < 0:
        return {}
    try:
        data = json.loads(text[start : end + 1]) if end > start else None
    except ValueError:
        data = None
    if data is None:
        try:  # a JSON object cut off by the token limit
            data = parse_partial_json(text[start:])
        except ValueError:
            return {}
    return _known_fields(data, scale)


def _read_layout(text: str, level_line: re.Pattern[str], scale: Scale) -> dict[str, str]:
    buckets: dict[str, list[str]] = {"preamble": []}
    current = "preamble"
    for line in text.splitlines():
        level = level_line.match(line)
        if level and scale[0] <= int(level.group(1)) <= scale[1]:
            current = f"score{int(level.group(1))}_description"
            buckets[current] = [level.group(2)]
        elif current == "preamble" and (criteria := _CRITERIA_LINE.match(line)):
            current = "criteria"
            buckets[current] = [criteria.group(1)]
        else:
            buckets[current].append(line)
    fields = {
        key: _trimmed(" ".join(part.strip(_MARKUP) for part in lines if part.strip(_MARKUP)))
        for key, lines in buckets.items()
    }
    preamble = fields.pop("preamble")
    if not fields.get("criteria"):
        fields["criteria"] = preamble
    return fields


def _completed(fields: Mapping[str, str], scale: Scale) -> Rubric:
    defaults = generic_rubric(scale).model_dump()
    return Rubric.model_validate({key: fields.get(key) or defaults[key] for key in defaults})


def parse_rubric(text: str, *, scale: Scale = (1, 5)) -> Rubric:
    r"""Read a rubric written in the ``Criteria: ...`` / ``Score 1: ...`` layout.

    Also reads Markdown variants (``**Score 1:**``, ``### Criteria``), ``Score 1 - ...``,
    multi-line level descriptions, a plain ``1.`` .. ``5.`` list when it has every level,
    and a JSON object with the :class:`Rubric` field names (also cut off). Never fails:
    text outside the layout becomes the criteria, and a level the text leaves out (or a
    level outside ``scale``) gets the generic description of that level
    (:func:`generic_rubric`).

    Args:
        text: The model's rubric.
        scale: The integer ``(low, high)`` scale the rubric grades on.

    Returns:
        The :class:`Rubric`, with one level per score of ``scale``.

    Raises:
        TypeError: If ``text`` is not a string.
        ValueError: If ``scale`` is not two integers with ``low < high``.

    Example:
        >>> rubric = parse_rubric(
        ...     "Criteria: Is the haiku 5-7-5?\nScore 1: Not a haiku.\n"
        ...     "Score 5: Exactly 5-7-5\nand vivid."
        ... )
        >>> rubric.criteria, rubric.score5_description
        ('Is the haiku 5-7-5?', 'Exactly 5-7-5 and vivid.')
        >>> rubric.score3_description == GENERIC_RUBRIC.score3_description
        True
        >>> pass_fail = "Criteria: Correct?\nScore 0: Wrong.\nScore 1: Right."
        >>> parse_rubric(pass_fail, scale=(0, 1)).levels
        {0: 'Wrong.', 1: 'Right.'}
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    scale = check_scale(scale)
    fields = _from_json(text, scale) or _read_layout(text, _LEVEL_LINE, scale)
    if not any(key.startswith("score") for key in fields):
        numbered = _read_layout(text, _NUMBERED_LINE, scale)
        if all(numbered.get(key) for key in _field_names(scale)[1:]):
            fields = numbered
    return _completed(fields, scale)


def read_rubric_fields(data: Any, *, scale: Scale = (1, 5)) -> Rubric | None:
    """The rubric in structured output (the fields of :func:`rubric_schema`), completed.

    Empty or missing levels get the generic description (:func:`generic_rubric`), as in
    :func:`parse_rubric`.

    Returns:
        The :class:`Rubric`, or ``None`` when ``data`` holds no rubric field at all.

    Example:
        >>> read_rubric_fields({"criteria": "Kind?", "score5_description": "Warm."}).criteria
        'Kind?'
        >>> read_rubric_fields({"answer": 4}) is None
        True
    """
    scale = check_scale(scale)
    fields = _known_fields(data, scale)
    return _completed(fields, scale) if fields else None


@functools.lru_cache(maxsize=32)
def _schema(scale: Scale) -> type[BaseModel]:
    levels = {
        f"score{n}_description": (
            str,
            Field(description=f"What a response that deserves {n} looks like."),
        )
        for n in range(scale[0], scale[1] + 1)
    }
    return create_model(  # type: ignore[call-overload, no-any-return]
        "ScoringRubric",
        __doc__=f"A scoring rubric for one instruction: one level per score {scale[0]}-{scale[1]}.",
        criteria=(
            str,
            Field(description="One question: what must a response to this instruction get right?"),
        ),
        **levels,
    )


def rubric_schema(scale: Scale = (1, 5)) -> type[BaseModel]:
    """The structured-output schema of a rubric on ``scale`` (tool name ``ScoringRubric``).

    Fields: ``criteria``, then ``score<N>_description`` for each score, lowest first; read
    the result with :func:`read_rubric_fields`.

    Example:
        >>> list(rubric_schema((0, 1)).model_fields)
        ['criteria', 'score0_description', 'score1_description']
    """
    return _schema(check_scale(scale))


def coerce_rubric(value: Any, field: str = "rubric", *, scale: Scale | None = None) -> Rubric:
    r"""Accept a :class:`Rubric`, a dict of its fields, or rubric text.

    Args:
        value: The rubric.
        field: The argument name used in error messages.
        scale: The scale the rubric must grade on; ``None`` accepts any (text is then read
            on 1-5).

    Raises:
        ValueError: Naming ``field``, if the value is none of these, is malformed, or does
            not have one level per score of ``scale``.

    Example:
        >>> coerce_rubric("Criteria: Polite?\nScore 5: Warm.").score5_description
        'Warm.'
    """
    if isinstance(value, Rubric):
        if scale is not None and value.scale != tuple(scale):
            raise ValueError(
                f"{field} has score levels {value.scale[0]}-{value.scale[1]}, but the judge's "
                f"scale is {scale[0]}-{scale[1]}"
            )
        return value
    if isinstance(value, Mapping):
        given = sorted(
            int(level.group(1))
            for key in value
            if isinstance(key, str) and (level := _LEVEL_KEY.match(key))
        )
        low, high = scale if scale is not None else (given[0], given[-1]) if given else (1, 5)
        names = _field_names((low, high))
        bad = [
            key
            for key in (*names, *(k for k in value if k not in names and k != "levels"))
            if not isinstance(value.get(key), str) or not value[key].strip()
        ]
        try:
            rubric = None if bad else Rubric.model_validate(dict(value))
        except ValidationError:
            rubric = None
        if rubric is None:
            raise ValueError(
                f"{field} must have non-empty string fields criteria and "
                f"score{low}_description..score{high}_description; bad or missing: "
                f"{', '.join(bad) or 'levels'}"
            ) from None
        return rubric
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{field} must be non-empty rubric text")
        return parse_rubric(value, scale=(1, 5) if scale is None else scale)
    raise ValueError(
        f"{field} must be a Rubric, a dict of its fields or rubric text, got {type(value).__name__}"
    )
