"""Settings every SPRI factory shares: loop limits, critic output, retries, models.

:class:`LoopSettings` checks the settings once, names the bad argument in a ``ValueError``,
and resolves the models; :func:`check_context` checks the per-run settings a graph's context
may change, before the run's first model call. The public factories keep flat keyword
arguments and build a :class:`LoopSettings` from them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.runnables import Runnable
from langgraph.types import RetryPolicy

from spri_graph.engine.steps import context_value
from spri_graph.models import ModelSpec, is_local_model, resolve_model, resolve_model_cached

__all__ = [
    "CriticOutput",
    "LoopSettings",
    "ResolvedModels",
    "check_context",
    "default_retry_policy",
    "is_transient_error",
    "validate_loop_settings",
]

CriticOutput = Literal["text", "structured"]

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


def validate_loop_settings(
    *,
    threshold: Any = 4,
    max_iterations: Any = 4,
    critic_output: Any = "text",
    critic_parse_retries: Any = 0,
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
    if critic_output not in ("text", "structured"):
        raise ValueError(f"critic_output must be 'text' or 'structured', got {critic_output!r}")
    if not _is_int(critic_parse_retries) or critic_parse_retries < 0:
        raise ValueError(
            f"critic_parse_retries must be an integer >= 0, got {critic_parse_retries!r}"
        )


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
    critic_output: CriticOutput


@dataclass(frozen=True)
class LoopSettings:
    """Validated settings of the refine loops one factory builds.

    Attributes:
        threshold: Critique score (1-5) that accepts a candidate.
        max_iterations: Most critiques per stage.
        critic_output: ``"text"``, ``"structured"`` or ``None`` (structured for the
            embedded local model, text otherwise).
        critic_parse_retries: Re-asks when a text critique has no readable score.
        retry_policy: Retry policy for model nodes (``None``: :func:`default_retry_policy`).

    Example:
        >>> LoopSettings(max_iterations=0)
        Traceback (most recent call last):
        ...
        ValueError: max_iterations must be an integer >= 1, got 0
    """

    threshold: int = 4
    max_iterations: int = 4
    critic_output: CriticOutput | None = None
    critic_parse_retries: int = 1
    retry_policy: RetryPolicy | None = None

    def __post_init__(self) -> None:
        validate_loop_settings(
            threshold=self.threshold,
            max_iterations=self.max_iterations,
            critic_output="text" if self.critic_output is None else self.critic_output,
            critic_parse_retries=self.critic_parse_retries,
        )

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy for model nodes."""
        return default_retry_policy() if self.retry_policy is None else self.retry_policy

    def resolve(self, model: ModelSpec, critic_model: ModelSpec = None) -> ResolvedModels:
        """Resolve the base and critic models and the critic output they get."""
        base = resolve_model(model, field="model")
        critic = None if critic_model is None else resolve_model(critic_model, field="critic_model")
        output = self.critic_output
        if output is None:
            output = "structured" if is_local_model(critic or base) else "text"
        return ResolvedModels(base=base, critic=critic, critic_output=output)

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as the factories' keyword arguments."""
        return {
            "threshold": self.threshold,
            "max_iterations": self.max_iterations,
            "critic_output": self.critic_output,
            "critic_parse_retries": self.critic_parse_retries,
            "retry_policy": self.retry_policy,
        }


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
