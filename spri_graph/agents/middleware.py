"""SPRI inside agents: situated principles for every turn of a ``create_agent`` agent.

:class:`SPRIMiddleware` plugs the SPRI stages into :func:`langchain.agents.create_agent`:

* ``before_agent`` - once per user turn, the principles stage writes (and critiques and
  refines) principles for the turn's last human message (with ``speculative=True`` it only
  records the turn, and the stage runs inside the turn's first model call);
* ``wrap_model_call`` - every model call of the turn gets them in its system message (the
  stored conversation is left as it is);
* ``after_model`` - with ``refine_answer=True``, the agent's final answer (an AI message
  without tool calls) goes through the response loop's critique -> refine steps and
  replaces the stored answer (same message id).

The state keys it adds all start with ``spri_``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
)
from langchain.agents.middleware.types import OmitFromInput, PrivateStateAttr
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langgraph.cache.base import BaseCache
from langgraph.config import get_config
from langgraph.constants import TAG_NOSTREAM
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command
from typing_extensions import NotRequired, TypedDict, Unpack

from spri_graph.agents.review import create_answer_review_graph
from spri_graph.agents.speculation import EarlyModelCall, acall_early, call_early
from spri_graph.alignment.spri import (
    SPRIOptions,
    SPRISettings,
    create_principles_graph,
    format_conversation,
)
from spri_graph.engine.loop import loop_done
from spri_graph.engine.options import SPRIContext
from spri_graph.engine.prompts import SPRI_PROMPTS, resolve_prompts
from spri_graph.engine.steps import StageUsage, message_text
from spri_graph.models import ModelSpec
from spri_graph.readers.scores import Critique

__all__ = ["PRINCIPLES_SECTION", "SPRIAgentState", "SPRIMiddleware", "SPRITurn"]

PRINCIPLES_SECTION = (
    "### Principles\nFollow these principles in your answer to the user's latest message:\n"
    "{principles}"
)
"""How the turn's principles are added to the agent's system message."""


class SPRITurn(TypedDict):
    """The user turn the stored principles were written for."""

    message_id: str
    """Id of the turn's last human message (``"index:<n>"`` when it has no id)."""
    query: str
    """That message's text."""
    goal: str | None
    """The ``goal`` of the agent's runtime context, if any."""
    conversation: str
    """The earlier user/assistant messages the prompts see (``history`` of them)."""


class _PendingTurn(TypedDict):
    turn: SPRITurn
    messages: list[AnyMessage]
    """The turn's question and the earlier messages its prompts see."""


class SPRIAgentState(AgentState[Any]):
    """Agent state keys added by :class:`SPRIMiddleware` (all prefixed ``spri_``)."""

    spri_principles: NotRequired[Annotated[str, OmitFromInput]]
    """The principles of the current turn."""
    spri_principle_critiques: NotRequired[Annotated[list[Critique], OmitFromInput]]
    """The critiques the principles stage made this turn."""
    spri_response_critiques: NotRequired[Annotated[list[Critique], OmitFromInput]]
    """The critiques of this turn's final answer (``refine_answer=True``)."""
    spri_usage: NotRequired[Annotated[dict[str, StageUsage], OmitFromInput]]
    """This turn's SPRI model calls and tokens by stage (``principles``, ``response``)."""
    spri_turn: NotRequired[Annotated[SPRITurn, PrivateStateAttr]]
    """The turn the principles belong to, so they are made once per turn."""
    spri_pending_turn: NotRequired[Annotated[_PendingTurn | None, PrivateStateAttr]]
    """A turn whose principles its first model call writes (``speculative=True``)."""


@dataclass(frozen=True)
class _Plan:
    """What a hook needs: at most one SPRI graph run, then the state update from its output."""

    graph: CompiledStateGraph[Any, Any, Any, Any] | None
    inputs: dict[str, Any]
    finish: Callable[[Mapping[str, Any]], dict[str, Any]]


def _run(plan: _Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    out = (
        {}
        if plan.graph is None
        else plan.graph.invoke(plan.inputs, get_config(), context=SPRIContext())
    )
    return plan.finish(out)


async def _arun(plan: _Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    out = (
        {}
        if plan.graph is None
        else await plan.graph.ainvoke(plan.inputs, get_config(), context=SPRIContext())
    )
    return plan.finish(out)


def _goal(runtime: Runtime[Any]) -> str | None:
    context = getattr(runtime, "context", None)
    if context is None:
        return None
    goal = context.get("goal") if isinstance(context, Mapping) else getattr(context, "goal", None)
    if goal is not None and not isinstance(goal, str):
        raise ValueError(f"context goal must be a string or None, got {type(goal).__name__}")
    return goal or None


def _last_human(state: Mapping[str, Any]) -> tuple[Sequence[AnyMessage], int]:
    """The messages and the position of the last human message, which must have text."""
    messages = state.get("messages")
    if not messages:
        raise ValueError(
            "SPRIMiddleware: the agent state has no messages; invoke the agent with "
            "{'messages': [...]} ending in the user's message"
        )
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, HumanMessage):
            if not message_text(message).strip():
                raise ValueError("SPRIMiddleware: the last human message has no text")
            return messages, index
    raise ValueError("SPRIMiddleware: the agent state has no human message to write principles for")


def _with_section(system: SystemMessage | None, section: str) -> SystemMessage:
    if system is None:
        return SystemMessage(section)
    content = system.content
    if isinstance(content, str):
        content = f"{content}\n\n{section}" if content else section
    else:
        content = [*content, {"type": "text", "text": f"\n\n{section}"}]
    return system.model_copy(update={"content": content})


def _turn_messages(messages: Sequence[AnyMessage], index: int, history: int) -> list[AnyMessage]:
    """The question at ``index`` and the earlier messages its prompts see (``history``)."""
    earlier = [m for m in messages[:index] if format_conversation([m], 1)]
    return [*(earlier[max(0, len(earlier) - history) :] if history else []), messages[index]]


class SPRIMiddleware(AgentMiddleware[SPRIAgentState, Any, Any]):
    """Situated principles for every turn of a ``create_agent`` agent.

    Once per user turn, before the agent's first model call, the principles stage of SPRI
    writes principles for the turn's last human message (critiqued and refined as in
    :func:`~spri_graph.create_principles_graph`). Every model call of that turn gets them
    in its system message; tool calls and tool results within the turn reuse them, and so
    does a run resumed from a checkpoint mid-turn. With ``refine_answer=True`` the agent's
    final answer is critiqued against the principles and refined by the response loop;
    answers that call tools, and structured responses, are left alone.

    With ``speculative=True`` the principles are written inside the turn's first model
    call instead, and that call starts on the draft principles while the critic grades
    them. If the critique accepts them, the response is kept (the wait for one critique is
    saved); if it asks for a refinement, the early call is dropped (cancelled on the async
    path; on the sync path, where a started call cannot be stopped, waited for once the
    principles are final) and the model is called with the final principles. With models
    whose replies depend on the prompt alone, the turn's messages, principles and critiques
    are those of a sequential turn; ``spri_usage["speculation"]`` counts a dropped early
    call (with its tokens when it replied). The early call's tokens do not stream in
    ``stream_mode="messages"`` (a kept response arrives there as one message when the model
    step ends).

    State keys (none clash with the agent's own): ``spri_principles``,
    ``spri_principle_critiques``, ``spri_response_critiques``, ``spri_usage`` (model calls
    and tokens of this turn, by stage) and the private ``spri_turn`` and
    ``spri_pending_turn``. A ``goal`` in the
    agent's runtime context (a mapping or an object with a ``goal`` attribute) is given to
    the principle writer; the SPRI settings do not read the agent's context.

    The SPRI calls run as nested graphs with the hook's config: they are traced under the
    agent's run, and with ``stream_mode="messages"`` they stream only when
    ``subgraphs=True`` (tagged ``spri:<stage>:<step>``), so the top-level stream carries
    the agent's own messages. A refined answer replaces the draft under the draft's
    message id: ``"values"`` and ``"updates"`` show the replacement, while ``"messages"``
    has already streamed the draft. Critiques are :class:`~spri_graph.Critique` (dicts
    with attribute access); read back from a checkpoint they are plain dicts, which
    ``Critique.of`` turns back.

    Args:
        model: Base model of the SPRI loops: a chat model, a model string (``"local"``,
            ``"openai:gpt-4o-mini"``, ...), or ``None`` for ``$SPRI_MODEL`` / the embedded
            local model. It need not be the agent's model.
        cache: The node cache for the ``cache_policy`` option: ``InMemoryCache()`` or
            ``SqliteCache(path=...)`` (the agent's own ``cache=`` does not reach it).
        principles: ``True`` to write principles each turn, a string to use fixed
            principles instead, ``False`` for none.
        refine_answer: Critique and refine the agent's final answer against the principles.
        **options: The shared options (:class:`~spri_graph.engine.options.LoopOptions`) and
            :class:`~spri_graph.alignment.spri.SPRIOptions`. ``prompts`` is keyed like
            :data:`~spri_graph.SPRI_PROMPTS` (the answer refinement uses
            ``response_critique`` and ``response_refine``); ``history`` is how many earlier
            user/assistant messages the SPRI prompts see (``0``: the turn's question
            alone); ``cache_policy`` caches the principles stage (a repeated question with
            the same conversation, goal, models and prompts makes no principle-stage
            calls); ``speculative`` starts the turn's first model call on the draft
            principles while the critic grades them (needs ``principles=True``).

    Raises:
        ValueError: If a setting is out of range, a model string cannot be resolved,
            ``refine_answer=True`` comes with ``principles=False``, or
            ``speculative=True`` with principles not written each turn. Unknown options
            raise ``TypeError``. A turn without messages or without a human message fails
            with a ``ValueError`` when it starts.

    Example:
        >>> from langchain.agents import create_agent
        >>> from langchain_core.language_models import GenericFakeChatModel
        >>> spri_model = GenericFakeChatModel(messages=iter(["1. Be brief.", "Good. [RESULT] 5"]))
        >>> agent_model = GenericFakeChatModel(messages=iter(["Sleep eight hours."]))
        >>> agent = create_agent(agent_model, middleware=[SPRIMiddleware(spri_model)])
        >>> out = agent.invoke({"messages": [{"role": "user", "content": "Tips to rest?"}]})
        >>> out["spri_principles"], out["messages"][-1].content
        ('1. Be brief.', 'Sleep eight hours.')
    """

    state_schema = SPRIAgentState

    def __init__(
        self,
        model: ModelSpec = None,
        *,
        cache: BaseCache[Any] | None = None,
        principles: bool | str = True,
        refine_answer: bool = False,
        **options: Unpack[SPRIOptions],
    ) -> None:
        super().__init__()
        settings = SPRISettings.from_options(options, caller="SPRIMiddleware")
        if not isinstance(principles, bool) and not (
            isinstance(principles, str) and principles.strip()
        ):
            raise ValueError(
                f"principles must be True, False or a non-empty string, got {principles!r}"
            )
        if not isinstance(refine_answer, bool):
            raise ValueError(f"refine_answer must be True or False, got {refine_answer!r}")
        if settings.speculative and principles is not True:
            raise ValueError(
                "speculative=True starts the model call on the draft of the principles "
                "written each turn; it needs principles=True"
            )
        if refine_answer and principles is False:
            raise ValueError(
                "refine_answer=True needs principles to critique the answer against; pass "
                "principles=True (written each turn) or a string of fixed principles"
            )
        stage_prompts = resolve_prompts(SPRI_PROMPTS, settings.loop.prompts)
        models = settings.loop.resolve(model)
        self.principles = principles
        self.refine_answer = refine_answer
        self.speculative = settings.speculative
        self.settings = settings
        self.model = models.base
        self.critic_model = models.critic
        self.history = settings.history
        # Built (and so checked) even when the principles are fixed.
        principles_options = {**settings.options(), "critic_model": models.critic}
        del principles_options["speculative"]  # the middleware's own, not the graph's
        principles_graph = create_principles_graph(models.base, **principles_options)
        self._principles_graph = (
            principles_graph.compile(name="spri_principles", cache=cache)
            if principles is True
            else None
        )
        critic_tags = () if settings.stream_critiques else (TAG_NOSTREAM,)
        self._answer_graph = (
            create_answer_review_graph(models, settings.loop, stage_prompts, critic_tags)
            if refine_answer
            else None
        )

    # ------------------------------------------------------------------ plans (sync = async)

    def _new_turn(self, state: Mapping[str, Any], runtime: Runtime[Any]) -> _PendingTurn | None:
        if self.principles is False:
            return None  # nothing to steer with (and refine_answer needs principles)
        messages, index = _last_human(state)
        message_id = messages[index].id or f"index:{index}"
        turns = state.get("spri_turn"), (state.get("spri_pending_turn") or {}).get("turn")
        if message_id in [(turn or {}).get("message_id") for turn in turns]:
            return None  # this turn's principles exist (a new run on the same turn, a resume)
        turn = SPRITurn(
            message_id=message_id,
            query=message_text(messages[index]),
            goal=_goal(runtime),
            conversation=format_conversation(messages[:index], self.history),
        )
        return _PendingTurn(turn=turn, messages=_turn_messages(messages, index, self.history))

    def _start_turn(self, state: Mapping[str, Any], runtime: Runtime[Any]) -> _Plan | None:
        pending = self._new_turn(state, runtime)
        if pending is None:
            return None
        if self.speculative:  # the turn's first model call writes the principles
            return _Plan(None, {}, lambda _: {"spri_pending_turn": pending})
        return self._principles_plan(pending)

    def _principles_plan(self, pending: _PendingTurn) -> _Plan:
        turn = pending["turn"]

        def finish(out: Mapping[str, Any]) -> dict[str, Any]:
            # ``out`` is empty when the principles are fixed.
            update: dict[str, Any] = {
                "spri_turn": turn,
                "spri_principles": out.get("principles", self.principles),
                "spri_principle_critiques": out.get("principle_critiques", []),
                "spri_usage": {"principles": out["usage"]["principles"]} if out else {},
            }
            if self.refine_answer:
                update["spri_response_critiques"] = []
            if self.speculative:
                update["spri_pending_turn"] = None
            return update

        # Given the messages, the principles stage also sees the conversation so far.
        inputs = {"messages": pending["messages"], "goal": turn["goal"]}
        return _Plan(self._principles_graph, inputs, finish)

    def _early_call(self, request: ModelRequest) -> tuple[EarlyModelCall, _Plan] | None:
        pending: _PendingTurn | None = request.state.get("spri_pending_turn")  # type: ignore[assignment]
        if not self.speculative or not pending or self._principles_graph is None:
            return None
        plan = self._principles_plan(pending)
        spec = EarlyModelCall(
            self._principles_graph,
            plan.inputs,
            steer=lambda principles: self._steer(request, principles),
            accepts=self._accepts,
            context=SPRIContext(),
        )
        return spec, plan

    def _accepts(self, critiques: Sequence[Critique]) -> bool:
        """Whether the principles loop stops at these critiques (no refinement)."""
        loop = self.settings.loop
        return loop_done(critiques, threshold=loop.threshold, max_iterations=loop.max_iterations)

    def _review_answer(self, state: Mapping[str, Any]) -> _Plan | None:
        if self._answer_graph is None:
            return None
        messages = state.get("messages") or []
        answer = messages[-1] if messages else None
        if not isinstance(answer, AIMessage) or answer.tool_calls or answer.invalid_tool_calls:
            return None
        if state.get("structured_response") is not None:
            return None  # the answer is the structured response's source: leave it as is
        turn, principles = state.get("spri_turn"), state.get("spri_principles")
        draft = message_text(answer)
        if not turn or not principles or not draft.strip():
            return None

        def finish(out: Mapping[str, Any]) -> dict[str, Any]:
            usage = {**(state.get("spri_usage") or {}), "response": out["usage"]["response"]}
            update = {"spri_response_critiques": out["response_critiques"], "spri_usage": usage}
            if out["response"] != draft:
                update["messages"] = [answer.model_copy(update={"content": out["response"]})]
            return update

        inputs = {
            "query": turn["query"],
            "goal": turn["goal"],
            "conversation": turn["conversation"],
            "principles": principles,
            "response": draft,
            "response_critiques": [],
        }
        return _Plan(self._answer_graph, inputs, finish)

    def _steer(self, request: ModelRequest, principles: str | None = None) -> ModelRequest:
        principles = principles or request.state.get("spri_principles")  # type: ignore[assignment]
        if self.principles is False or not principles:
            return request
        section = PRINCIPLES_SECTION.format(principles=principles)
        return request.override(system_message=_with_section(request.system_message, section))

    # ------------------------------------------------------------------ hooks

    def before_agent(self, state: SPRIAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Write the turn's principles, unless this turn already has them."""
        return _run(self._start_turn(state, runtime))

    async def abefore_agent(
        self, state: SPRIAgentState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Async :meth:`before_agent`."""
        return await _arun(self._start_turn(state, runtime))

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | ExtendedModelResponse[Any]:
        """Call the model with the turn's principles added to its system message.

        With ``speculative=True`` the turn's first call writes the principles, and starts
        the model on their draft while the critic grades it.
        """
        early = self._early_call(request)
        if early is None:
            return handler(self._steer(request))
        return _speculated(*early, call_early(early[0], handler))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | ExtendedModelResponse[Any]:
        """Async :meth:`wrap_model_call`."""
        early = self._early_call(request)
        if early is None:
            return await handler(self._steer(request))
        return _speculated(*early, await acall_early(early[0], handler))

    def after_model(self, state: SPRIAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Critique and refine a final answer (``refine_answer=True``)."""
        return _run(self._review_answer(state))

    async def aafter_model(
        self, state: SPRIAgentState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Async :meth:`after_model`."""
        return await _arun(self._review_answer(state))


def _speculated(
    spec: EarlyModelCall, plan: _Plan, response: ModelResponse
) -> ExtendedModelResponse[Any]:
    """The model's response, and the turn's principles as a state update."""
    update = plan.finish(spec.values)
    if spec.wasted:
        update["spri_usage"] = {
            **update["spri_usage"],
            "speculation": spec.wasted_usage(),
        }
    return ExtendedModelResponse(model_response=response, command=Command(update=update))
