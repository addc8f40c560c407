"""Instance-specific rubrics: the :class:`Rubric` type, its text layout and its reader.

Rubrics are written in a fixed text layout (see :data:`spri_graph.prompts.RUBRIC_LAYOUT`) and
read by :func:`parse_rubric`. A rubric the model did not write in that layout never stops a
run: whatever text it wrote becomes the criteria, and each score level it left out gets the
generic description of that level from :data:`GENERIC_RUBRIC`, so grading always has a full
1-5 ladder and the rubric critic sees (and can fault) exactly what the grader will use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError

__all__ = ["GENERIC_RUBRIC", "Rubric", "coerce_rubric", "parse_rubric"]


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


def coerce_rubric(value: Any, field: str = "rubric") -> Rubric:
    r"""Accept a :class:`Rubric`, a dict of its fields, or rubric text.

    Raises:
        ValueError: Naming ``field``, if the value is none of these or is malformed.

    Example:
        >>> coerce_rubric("Criteria: Polite?\nScore 5: Warm.").score5_description
        'Warm.'
    """
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
