"""The SPRI graphs of LangGraph Studio and ``langgraph dev``, built by factory functions.

``langgraph.json`` at the project root names one factory per graph, which the server calls
when it needs the graph (so importing this module compiles nothing and loads no model)::

    pip install -e '.[local,dev]'
    langgraph dev

* ``spri`` (:func:`make_spri`) - situated principles, then a response aligned to them;
* ``spri_review`` (:func:`make_spri_review`) - the same, pausing for human review of the
  principles;
* ``principles`` (:func:`make_principles`) - the principles stage alone;
* ``judge`` (:func:`make_judge`) - an instance-specific rubric, then a refined grading of a
  response;
* ``agent`` (:func:`make_agent`) - a ``create_agent`` agent with two offline tools
  (:func:`calculator`, :func:`convert_units`) and :class:`~spri_graph.SPRIMiddleware`:
  principles for each user turn in its system message, and its final answer critiqued and
  refined against them. Left to choose, the embedded SmolLM2-135M answers in text and never
  calls a tool, so on that model the first model call of each turn is made to call the
  calculator (:class:`FirstToolCall`); the agent runs the tool and the model, free to
  choose again, answers from its result. A model from ``$SPRI_MODEL`` chooses its tools
  itself.

The model is ``$SPRI_MODEL`` when set, else the embedded local model, which loads on the
first model call (once per process), not when a graph is built. Per-run settings come from
the graphs' context (:class:`~spri_graph.SPRIContext`: ``model``, ``critic_model``,
``threshold``, ``max_iterations``): Studio shows them as assistant settings, and a run can
change them with ``context={...}``. The agent's input is ``{"messages": [...]}`` and its
context an :class:`AgentContext` (a ``goal`` for the principle writer). To keep the dev
server fully offline, also set ``LANGGRAPH_CLI_NO_ANALYTICS=1`` and
``LANGGRAPH_NO_VERSION_CHECK=true``.

While it reloads on code changes, the dev server logs "N changes detected" every 10 s: its
in-memory runtime rewrites its own thread store in ``./.langgraph_api``, inside the folder
its watcher watches (the graphs write nothing there). ``langgraph dev --no-reload`` runs
without the watcher.

Example:
    >>> from spri_graph.studio import make_spri
    >>> spri = make_spri()
    >>> sorted(spri.get_context_jsonschema()["properties"])
    ['critic_model', 'max_iterations', 'model', 'threshold']
    >>> spri.invoke(  # doctest: +SKIP
    ...     {"query": "Tips for a first marathon?"}, context={"max_iterations": 2}
    ... )
    >>> from spri_graph.studio import calculator, convert_units
    >>> calculator.invoke({"expression": "12 * (3 + 4.5)"})
    '90'
    >>> calculator.invoke({"expression": "17 x 24 = ?"})
    '408'
    >>> convert_units.invoke({"value": 10, "from_unit": "km", "to_unit": "mi"})
    '6.21371 mi'
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.graph.state import CompiledStateGraph

from spri_graph.agents.middleware import SPRIMiddleware
from spri_graph.alignment.spri import create_principles_graph, create_spri_graph
from spri_graph.judges.absolute import create_judge
from spri_graph.models import LocalChatModel, resolve_model

__all__ = [
    "AgentContext",
    "FirstToolCall",
    "calculator",
    "convert_units",
    "make_agent",
    "make_judge",
    "make_principles",
    "make_spri",
    "make_spri_review",
]


def make_spri() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The SPRI graph: principles, then a response guided by them."""
    return create_spri_graph().compile(name="spri")


def make_spri_review() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The SPRI graph with human review: it pauses after the principles stage.

    Resume the thread with ``Command(resume=True)`` to approve them or with edited
    principles (a string).
    """
    return create_spri_graph(review_principles=True).compile(name="spri_review")


def make_principles() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The principles stage alone."""
    return create_principles_graph().compile(name="principles")


def make_judge() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The SPRI judge: a rubric for the instruction, then a grading of the response with it."""
    return create_judge().compile(name="judge")


_OPERATORS: dict[type[ast.AST], Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return cast(float, node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large")
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"unsupported expression: {ast.dump(node)[:60]}")


_TIMES = re.compile(r"(?<=[\d)\s])[xX](?=[\s\d(])")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.

    Example: "12 * (3 + 4.5)".
    """
    # Written as people write it: "17 x 24 = ..." is 17 * 24.
    left = expression.partition("=")[0].replace("×", "*").replace("÷", "/")
    try:
        value = _evaluate(ast.parse(_TIMES.sub("*", left).strip(), mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as exc:
        return f"Error: {exc}"
    return f"{value:g}" if isinstance(value, float) else str(value)


# Factors to a base unit per dimension: metres, kilograms, litres.
_UNITS = {
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "cm": ("length", 0.01),
    "mi": ("length", 1609.344),
    "ft": ("length", 0.3048),
    "in": ("length", 0.0254),
    "kg": ("mass", 1.0),
    "g": ("mass", 0.001),
    "lb": ("mass", 0.45359237),
    "oz": ("mass", 0.028349523125),
    "l": ("volume", 1.0),
    "ml": ("volume", 0.001),
    "gal": ("volume", 3.785411784),
}


@tool
def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a length, mass, volume or temperature from one unit to another.

    Units: m, km, cm, mi, ft, in; kg, g, lb, oz; l, ml, gal; c, f, k (temperatures).
    """
    source, target = from_unit.strip().lower(), to_unit.strip().lower()
    temperatures = {"c": (1.0, 0.0), "f": (5 / 9, -32.0), "k": (1.0, -273.15)}
    if source in temperatures and target in temperatures:
        scale, offset = temperatures[source]
        celsius = (value + offset) * scale
        scale, offset = temperatures[target]
        return f"{celsius / scale - offset:g} {to_unit}"
    if source not in _UNITS or target not in _UNITS:
        return f"Error: unknown unit {source if source not in _UNITS else target!r}"
    (kind, factor), (target_kind, target_factor) = _UNITS[source], _UNITS[target]
    if kind != target_kind:
        return f"Error: cannot convert {kind} to {target_kind}"
    return f"{value * factor / target_factor:g} {to_unit}"


@dataclass
class AgentContext:
    """Per-run settings of the ``agent`` graph.

    Attributes:
        goal: What the answer should achieve; the principle writer takes it into account.
    """

    goal: str | None = None


class FirstToolCall(AgentMiddleware[Any, Any, Any]):
    """Make the first model call of each user turn call one tool.

    For models that never choose a tool on their own (such as the embedded SmolLM2-135M):
    the call whose last message is the user's (the turn's first) runs with
    ``tool_choice=tool``; the agent runs the tool, and every later call of the turn, with
    the tool's result in its messages, leaves the choice to the model as before.

    Args:
        tool: Name of the tool the turn's first call must call.

    Raises:
        ValueError: If ``tool`` is not a non-empty string.

    Example:
        >>> from langchain.agents import create_agent
        >>> from spri_graph.models import load_local_model
        >>> agent = create_agent(  # doctest: +SKIP
        ...     load_local_model(), [calculator], middleware=[FirstToolCall("calculator")]
        ... )
    """

    def __init__(self, tool: str) -> None:
        super().__init__()
        if not isinstance(tool, str) or not tool.strip():
            raise ValueError(f"tool must be a tool's name, got {tool!r}")
        self.tool = tool

    def _choose(self, request: ModelRequest) -> ModelRequest:
        messages = request.messages
        if messages and isinstance(messages[-1], HumanMessage):
            return request.override(tool_choice=self.tool)
        return request

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        """Call the model, made to call :attr:`tool` if this is the turn's first call."""
        return handler(self._choose(request))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        """Async :meth:`wrap_model_call`."""
        return await handler(self._choose(request))


def make_agent() -> CompiledStateGraph[Any, Any, Any, Any]:
    """A tool-using agent whose turns are steered by SPRI principles.

    On the embedded model (no ``$SPRI_MODEL``), which never calls a tool unprompted, the
    first model call of each turn is made to call the calculator (:class:`FirstToolCall`);
    the rest of the turn, the answer from the tool's result included, is the model's choice.
    """
    model = cast(BaseChatModel, resolve_model(None))
    middleware: list[AgentMiddleware[Any, Any, Any]] = [
        SPRIMiddleware(model, max_iterations=2, refine_answer=True)
    ]
    if isinstance(model, LocalChatModel):
        middleware.append(FirstToolCall(calculator.name))
    return create_agent(
        model,
        tools=[calculator, convert_units],
        system_prompt=(
            "You are a helpful assistant. Use the calculator for arithmetic and convert_units "
            "for unit conversions, then answer in a few sentences."
        ),
        middleware=middleware,
        context_schema=AgentContext,
        name="agent",
    )
