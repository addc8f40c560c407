"""The options every entry point shares, declared once: loop limits, critic, retries, caching.

:class:`LoopOptions` declares the refine-loop options every entry point takes as keyword
arguments (``**options: Unpack[LoopOptions]``, or a ``TypedDict`` extending it);
:class:`LoopSettings` holds their defaults and checks them, naming the bad argument in a
``ValueError``, and resolves the models. :class:`SPRIContext` is the per-run context every
graph takes, and :func:`check_context` checks it before the run's first model call. The
retry policy for transient model errors lives here too.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Literal

from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langgraph.graph import StateGraph
from langgraph.types import CachePolicy, RetryPolicy
from langgraph.typing import InputT, OutputT, StateT
from typing_extensions import TypedDict

from spri_graph.engine.caching import check_cache_policy
from spri_graph.engine.steps import context_value
from spri_graph.models import ModelSpec, is_local_model, resolve_model, resolve_model_cached

__all__ = [
    "DEPRECATED_OPTIONS",
    "CallOptions",
    "LoopOptions",
    "LoopSettings",
    "OutputMode",
    "ResolvedModels",
    "SPRIContext",
    "check_context",
    "default_retry_policy",
    "is_transient_error",
    "option_names",
    "spri_state_graph",
    "take_options",
    "validate_loop_settings",
]

_TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
_TRANSIENT_NAMES = (
    "RateLimit",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailable",
    "Overloaded",
    "RemoteProtocolError",
    "ConnectError",
)


def is_transient_error(exc: BaseException) -> bool:
    """Whether a model error is worth retrying: timeouts, rate limits, 5xx, lost connections.

    Works across providers without importing them: it looks at the status code the
    exception carries (``status_code`` or ``response.status_code``) and its class names.

    Example:
        >>> is_transient_error(TimeoutError()), is_transient_error(ValueError("bad"))
        (True, False)
    """
    if isinstance(exc, (TimeoutError, ConnectionError, asyncio.TimeoutError)):
        return True
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in _TRANSIENT_STATUS or 500 <= status < 600
    names = [cls.__name__ for cls in type(exc).__mro__]
    return any(marker in name for name in names for marker in _TRANSIENT_NAMES)


def default_retry_policy(
    max_attempts: int = 4, initial_interval: float = 1.0, max_interval: float = 30.0
) -> RetryPolicy:
    """The retry policy the graph factories use for model nodes.

    Retries :func:`is_transient_error` failures with exponential backoff and jitter; any
    other error surfaces at once.

    Args:
        max_attempts: Attempts per node, the first included.
        initial_interval: Seconds before the first retry; doubles each time.
        max_interval: Upper bound on the wait between attempts, in seconds.
    """
    return RetryPolicy(
        initial_interval=initial_interval,
        backoff_factor=2.0,
        max_interval=max_interval,
        max_attempts=max_attempts,
        jitter=True,
        retry_on=is_transient_error,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


OutputMode = Literal["text", "structured"]
"""How a model answers a grading call: free text read by the readers, or structured output
(a tool call with typed fields, grammar-constrained on the embedded local model)."""


class CallOptions(TypedDict, total=False):
    """The options every entry point that calls a model takes, refine loop or not.

    :class:`LoopOptions` extends them; the one-call judges take them with their grading
    options alone. Their defaults and checks are the fields of :class:`LoopSettings`.

    Attributes:
        prompts: Prompt overrides, keyed like the entry point's default prompts
            (:data:`~spri_graph.SPRI_PROMPTS`, :data:`~spri_graph.JUDGE_PROMPTS`): a
            ``ChatPromptTemplate`` or a template string each.
        retry_policy: Retry policy for transient model errors (timeouts, rate limits, 5xx);
            ``None`` (the default) means :func:`~spri_graph.default_retry_policy`.
        cache_policy: Cache model nodes with LangGraph's node cache, keyed on the models and
            the prompt each node would send, e.g. ``CachePolicy(ttl=3600)``; compile with
            ``cache=InMemoryCache()`` or ``SqliteCache(path=...)``. ``None``: no caching.
    """

    prompts: Mapping[str, ChatPromptTemplate | str] | None
    retry_policy: RetryPolicy | None
    cache_policy: CachePolicy[Any] | None


class LoopOptions(CallOptions, total=False):
    """The options every refine-loop entry point takes, with the same defaults.

    Every factory that runs the draft -> critique -> refine loop (the SPRI graphs, every
    judge, both evaluator kinds, the panel, the middleware, :func:`~spri_graph.synthesize`,
    Ray and the ``spri`` command's flags) takes these as keyword arguments, the
    :class:`CallOptions` (``prompts``, ``retry_policy``, ``cache_policy``) included. Their
    defaults and checks are the fields of :class:`LoopSettings`.

    Attributes:
        critic_model: The critic: a chat model or a model string; ``None`` (the default)
            means the base model critiques.
        threshold: Critique score (1-5) that accepts a candidate (default 4).
        max_iterations: Most critiques per stage, at least 1 (default 4).
        critic_output: ``"text"`` parses ``Feedback: ... [RESULT] N``; ``"structured"`` uses
            ``with_structured_output`` and always yields an integer score. ``None`` (the
            default) means ``"text"``, except ``"structured"`` for the embedded local model,
            which is too small to be trusted to print ``[RESULT] N``.
        parse_retries: Re-asks, with a format reminder, when a text reply (a critique, a
            grading or a verdict) carries no readable score (default 1). After that a loop
            stops and keeps its current candidate; a grading is left unread.
    """

    critic_model: ModelSpec
    threshold: int
    max_iterations: int
    critic_output: OutputMode | None
    parse_retries: int


DEPRECATED_OPTIONS: Mapping[str, str] = MappingProxyType({"critic_parse_retries": "parse_retries"})
"""Old option names still accepted for one release (with a ``DeprecationWarning``)."""


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning of the calling function at user code.

    It counts the frames up to the first one outside spri-graph, so the warning names the
    user's line however deep inside the package it is raised.
    """
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def take_options(
    options: Mapping[str, Any], allowed: Iterable[str], *, caller: str
) -> dict[str, Any]:
    """Check option names: old names renamed (with a warning), unknown names refused.

    Args:
        options: The keyword arguments an entry point received.
        allowed: The option names it takes.
        caller: The entry point's name, for the error message.

    Returns:
        The options under their current names.

    Raises:
        TypeError: If an option is unknown, like Python's own error for a bad keyword.

    Example:
        >>> take_options({"treshold": 3}, LoopOptions.__annotations__, caller="create_x")
        Traceback (most recent call last):
        ...
        TypeError: create_x() got an unexpected keyword argument 'treshold'
    """
    allowed = set(allowed)
    taken: dict[str, Any] = {}
    for name, value in options.items():
        new = DEPRECATED_OPTIONS.get(name)
        if new is not None and new in allowed:
            warnings.warn(
                f"{caller}(): {name}= is deprecated, use {new}=",
                DeprecationWarning,
                stacklevel=_caller_stacklevel(),
            )
            if new in options:
                raise TypeError(f"{caller}() got both {name}= and {new}=")
            name = new
        if name not in allowed:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
        taken[name] = value
    return taken


def validate_loop_settings(
    *,
    threshold: Any = 4,
    max_iterations: Any = 4,
    critic_output: Any = None,
    parse_retries: Any = 1,
) -> None:
    """Check loop settings, raising a ``ValueError`` that names the bad argument.

    Example:
        >>> validate_loop_settings(threshold=6)
        Traceback (most recent call last):
        ...
        ValueError: threshold must be an integer from 1 to 5, got 6
    """
    if not _is_int(threshold) or not 1 <= threshold <= 5:
        raise ValueError(f"threshold must be an integer from 1 to 5, got {threshold!r}")
    if not _is_int(max_iterations) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    if critic_output not in (None, "text", "structured"):
        raise ValueError(f"critic_output must be 'text' or 'structured', got {critic_output!r}")
    if not _is_int(parse_retries) or parse_retries < 0:
        raise ValueError(f"parse_retries must be an integer >= 0, got {parse_retries!r}")


@dataclass(frozen=True)
class ResolvedModels:
    """The models of one factory call, resolved once.

    Attributes:
        base: The model that drafts and refines.
        critic: The critic given, or ``None`` when the base model critiques.
        critic_output: ``"text"`` or ``"structured"``, with the local-model default applied.
    """

    base: Runnable[Any, Any]
    critic: Runnable[Any, Any] | None
    critic_output: OutputMode


@dataclass(frozen=True)
class LoopSettings:
    """The checked :class:`LoopOptions` of one entry point: the options' one set of defaults.

    Every field is a key of :class:`LoopOptions` (documented there), with its default.
    Build one with :meth:`from_options`, which refuses unknown names and names the bad
    value in a ``ValueError``.

    Example:
        >>> LoopSettings(max_iterations=0)
        Traceback (most recent call last):
        ...
        ValueError: max_iterations must be an integer >= 1, got 0
        >>> LoopSettings.from_options({"threshold": 5}, caller="create_x").threshold
        5
    """

    critic_model: ModelSpec = None
    threshold: int = 4
    max_iterations: int = 4
    critic_output: OutputMode | None = None
    parse_retries: int = 1
    prompts: Mapping[str, ChatPromptTemplate | str] | None = None
    retry_policy: RetryPolicy | None = None
    cache_policy: CachePolicy[Any] | None = None

    def __post_init__(self) -> None:
        validate_loop_settings(
            threshold=self.threshold,
            max_iterations=self.max_iterations,
            critic_output=self.critic_output,
            parse_retries=self.parse_retries,
        )
        check_cache_policy(self.cache_policy)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, caller: str) -> LoopSettings:
        """Settings from an entry point's keyword arguments (see :func:`take_options`)."""
        return cls(**take_options(options, option_names(cls), caller=caller))

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy for model nodes."""
        return default_retry_policy() if self.retry_policy is None else self.retry_policy

    def resolve(self, model: ModelSpec) -> ResolvedModels:
        """Resolve the base and critic models and the critic output they get."""
        base = resolve_model(model, field="model")
        critic = (
            None
            if self.critic_model is None
            else resolve_model(self.critic_model, field="critic_model")
        )
        output = self.critic_output
        if output is None:
            output = "structured" if is_local_model(critic or base) else "text"
        return ResolvedModels(base=base, critic=critic, critic_output=output)

    def options(self) -> dict[str, Any]:
        """The settings as keyword arguments, to pass on to another entry point."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def option_names(settings: type[Any]) -> tuple[str, ...]:
    """The option names a settings dataclass declares (its fields), in order.

    Example:
        >>> option_names(LoopSettings)[:3]
        ('critic_model', 'threshold', 'max_iterations')
    """
    return tuple(f.name for f in fields(settings))


@dataclass
class SPRIContext:
    """Per-run settings: ``graph.invoke(..., context=SPRIContext(...))``.

    Every SPRI graph and judge takes it as its ``context_schema``. ``None`` keeps the value
    given to the factory.

    Attributes:
        model: Model string for the base model (e.g. ``"openai:gpt-4o-mini"``, ``"local"``).
        critic_model: Model string for the critic.
        threshold: Score (1-5) that accepts a candidate.
        max_iterations: Most critiques per stage.
    """

    model: str | None = None
    critic_model: str | None = None
    threshold: int | None = None
    max_iterations: int | None = None


def spri_state_graph(
    state_schema: type[StateT], input_schema: type[InputT], output_schema: type[OutputT]
) -> StateGraph[StateT, SPRIContext, InputT, OutputT]:
    """A new builder for an SPRI graph: these schemas, :class:`SPRIContext` as its context.

    Example:
        >>> from typing_extensions import TypedDict
        >>> class State(TypedDict):
        ...     question: str
        >>> spri_state_graph(State, State, State).context_schema.__name__
        'SPRIContext'
    """
    return StateGraph(
        state_schema,
        context_schema=SPRIContext,
        input_schema=input_schema,
        output_schema=output_schema,
    )


def check_context(context: Mapping[str, Any] | None = None) -> None:
    """Check the per-run settings of the current run before its first model call.

    Reads ``threshold``, ``max_iterations``, ``model`` and ``critic_model`` from
    ``context`` (default: the running graph's context) and raises a ``ValueError`` naming
    the bad one; model strings are resolved (and cached) so a typo fails here.
    """

    def value(key: str) -> Any:
        return context_value(key) if context is None else context.get(key)

    for key in ("threshold", "max_iterations"):
        if (setting := value(key)) is not None:
            validate_loop_settings(**{key: setting})
    for key in ("model", "critic_model"):
        if (name := value(key)) is not None:
            if not isinstance(name, str):
                raise ValueError(f"context {key} must be a model string, got {name!r}")
            resolve_model_cached(name, field=key)
