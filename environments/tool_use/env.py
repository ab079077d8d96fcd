"""``ToolUseEnv``: the model calls tools over several turns, then gives a final answer.

One assistant message is one step. A message with ``<tool_call>`` blocks runs them and
the results come back as a ``tool`` message (the next observation); a message with one
``<answer>...</answer>`` ends the episode and is judged. Rules (see README.md):

* tool-call errors (malformed JSON, unknown tool, wrong argument names or types, a tool
  that raised) are returned to the model as the tool result; the episode goes on
  (verdict ``tool_error``, reward 0);
* a message that neither calls a tool nor gives exactly one answer, or does both, ends
  the episode with ``format_error``;
* an answer given before every tool in the task's ``required_tools`` has run
  successfully ends the episode with ``tool_error`` and reward 0, even if the value is
  right: the answer must come from the tools, not from a guess or an invented result;
* ``max_turns`` assistant messages without an answer truncate the episode
  (``wrong_answer``, "turn limit reached").

Rows of the static ToolAlpaca kind (with ``expected_actions``) are judged in one turn by
comparing the listed calls with the expected ones (see ``toolalpaca.py``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from sdpo_envs import Feedback, TaskSource, TextEnv, Turn
from sdpo_envs.tags import strip_thinking
from sdpo_envs.tools import call_label, render_results

from .answers import answer_type, check_answer, parse_number
from .builtin import builtin_tools
from .database import CompanyDatabase
from .oracle import oracle_actions
from .parsing import MalformedCall, find_answers, has_unclosed_answer, parse_tool_calls
from .python_tool import PythonTool
from .tasks import procedural_tasks
from .toolalpaca import build_static_messages, is_static, judge_static, parse_expected, toolalpaca_sample
from .tools import Tool, Toolbox, ToolResult

INSTRUCTIONS = (
    "Use the tools to find the answer. To call a tool, write\n"
    '<tool_call>{"name": <tool name>, "arguments": {<argument name>: <value>, ...}}</tool_call>\n'
    "You may call several tools in one message; their results come back in the next message. "
    "When you know the answer, reply with the final answer alone inside <answer></answer>, "
    "e.g. <answer>42</answer>, in a message without tool calls. An answer given without "
    "calling the tools it needs is not accepted."
)


class ToolUseEnv(TextEnv):
    """Multi-turn tool calling with Hermes/Qwen ``<tool_call>`` blocks; see the module docstring."""

    builtin_datasets: ClassVar[Mapping[str, Callable[..., TaskSource]]] = {
        "procedural": procedural_tasks,
        "toolalpaca": toolalpaca_sample,
    }
    default_dataset: ClassVar[str | None] = "procedural"
    observation_role = "tool"

    def __init__(
        self,
        dataset: Any = None,
        *,
        max_turns: int = 8,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        tools_in_prompt: bool = True,
        reveal_answer: bool = False,
        sandbox_backend: Any = "auto",
        sandbox_limits: Any = None,
        sql_max_rows: int = 50,
        max_tool_output_chars: int = 2000,
        max_calls_per_turn: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, max_turns=max_turns, **kwargs)
        self.tools_in_prompt = tools_in_prompt
        self.reveal_answer = reveal_answer
        self.max_calls_per_turn = max_calls_per_turn
        self.database = CompanyDatabase(max_rows=sql_max_rows)
        python_tool = PythonTool(backend=sandbox_backend, limits=sandbox_limits)
        self.toolbox = Toolbox(
            builtin_tools(self.database, python_tool), max_output_chars=max_tool_output_chars
        )
        for tool in tools:  # a user's own plain Python functions
            self.toolbox.add(tool)
        self._results: list[ToolResult] = []

    # -- tasks and prompt ------------------------------------------------------------------
    def validate_task(self, task: dict[str, Any]) -> dict[str, Any]:
        if is_static(task):
            for name in ("instruction", "api_documentation"):
                if not isinstance(task.get(name), str) or not task[name].strip():
                    raise ValueError(f"task field {name!r} must be a non-empty string")
            try:
                if not parse_expected(task["expected_actions"]):
                    raise ValueError("it lists no call")
            except (ValueError, KeyError, TypeError, IndexError, json.JSONDecodeError) as exc:
                raise ValueError(f"task field 'expected_actions' is invalid: {exc}") from None
            return task
        if not isinstance(task.get("question"), str) or not task["question"].strip():
            raise ValueError("task field 'question' must be a non-empty string")
        if task.get("answer") is None:
            raise ValueError("task field 'answer' is missing")
        tools = list(task.get("tools") or self.toolbox.names)
        unknown = [t for t in tools if t not in self.toolbox]
        if unknown:
            raise ValueError(
                f"task field 'tools' names unknown tool(s) {unknown}; known: {self.toolbox.names}"
            )
        required = list(task.get("required_tools") or [])
        if any(t not in tools for t in required):
            raise ValueError(f"task field 'required_tools' {required} must be a subset of 'tools' {tools}")
        kind = answer_type(task)
        if kind not in ("number", "text"):
            raise ValueError(f"task field 'answer_type' must be 'number' or 'text', got {kind!r}")
        if kind == "number" and parse_number(str(task["answer"])) is None:
            raise ValueError(
                f"task field 'answer' must be a number for answer_type 'number', got {task['answer']!r}"
            )
        return {**task, "tools": tools, "required_tools": required}

    def tool_schemas(self, task: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The JSON schemas of a task's tools, for ``apply_chat_template(..., tools=...)``."""
        # Copies: a caller that edits the list must not change the env's tools.
        if is_static(task):
            return copy.deepcopy(list(task.get("functions") or []))
        return copy.deepcopy(self.toolbox.schemas(task["tools"]))

    def build_messages(self, task: dict[str, Any]) -> list[dict[str, str]]:
        if is_static(task):
            return build_static_messages(task)
        parts = [task["question"].strip()]
        if self.tools_in_prompt:
            schemas = "\n".join(json.dumps(s, ensure_ascii=False) for s in self.tool_schemas(task))
            parts.append(f"Available tools (JSON schemas):\n{schemas}")
        parts.append(INSTRUCTIONS)
        return [{"role": "user", "content": "\n\n".join(parts)}]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        observation, info = super().reset(seed=seed, options=options)
        self._results = []
        assert self.task is not None
        info["tools"] = self.tool_schemas(self.task)
        return observation, info

    # -- one assistant message -------------------------------------------------------------
    def oracle_actions(self, task: dict[str, Any]) -> list[str]:
        return oracle_actions(self.validate_task(task))

    def respond(self, action: str) -> Turn:
        assert self.task is not None
        text = strip_thinking(action)
        if is_static(self.task):
            reward, feedback = judge_static(self.task, text, reveal_expected=self.reveal_answer)
            return Turn(reward, feedback)
        calls = parse_tool_calls(text)
        answers = find_answers(text)
        if calls and (answers or has_unclosed_answer(text)):
            return self._format_error(
                "the message both calls tools and gives a final answer. A message must do one or the "
                "other: the answer cannot use tool results you have not seen yet."
            )
        if calls:
            return self._run_calls(calls)
        return self._judge_answer(answers, text)

    def _format_error(self, reason: str, **details: Any) -> Turn:
        return Turn(0.0, Feedback(text=f"Format error: {reason}", verdict="format_error", details=details))

    def _run_calls(self, calls: list[Any]) -> Turn:
        assert self.task is not None
        results = []
        for i, call in enumerate(calls):
            if i >= self.max_calls_per_turn:
                error = f"too many tool calls in one message (at most {self.max_calls_per_turn}); this one was not run"
                result = ToolResult(
                    getattr(call, "name", "(malformed)"), getattr(call, "arguments", {}), error=error
                )
            elif isinstance(call, MalformedCall):
                result = ToolResult("", {}, error=f"malformed tool call: {call.message}")
            else:
                result = self.toolbox.run(call, offered=self.task["tools"])
            if result.unavailable:  # the environment's fault: leave this rollout out of training
                return Turn(
                    0.0, Feedback.judge_error(result.error or "tool unavailable", call=result.to_dict())
                )
            results.append(result)
        self._results.extend(results)
        details = {"calls": [r.to_dict() for r in results]}
        errors = [f"- {call_label(i, r)}: {r.error}" for i, r in enumerate(results, start=1) if not r.ok]
        if self.turn >= self.max_turns:
            text = (
                f"Turn limit reached: {self.max_turns} messages without a final answer in <answer></answer>."
            )
            if errors:
                text += " The last tool calls also failed:\n" + "\n".join(errors)
            feedback = Feedback(
                text=text, verdict="wrong_answer", details={**details, "reason": "turn_limit"}
            )
        elif errors:
            feedback = Feedback(
                text="Tool call error(s):\n" + "\n".join(errors), verdict="tool_error", details=details
            )
        else:
            # Nothing went wrong in this step, but the task is not solved yet: success stays False.
            text = f"{len(results)} tool call(s) ran and their results were returned."
            feedback = Feedback(text=text, verdict="pass", success=False, details=details)
        return Turn(0.0, feedback, render_results(results))

    def _trace(self) -> str:
        if not self._results:
            return "No tool was called."
        shown = [f"{r.name} ({'ok' if r.ok else 'error'})" for r in self._results[-8:]]
        return "Tool calls made: " + ", ".join(shown) + "."

    def _judge_answer(self, answers: list[str], text: str) -> Turn:
        assert self.task is not None
        task = self.task
        if not answers:
            if has_unclosed_answer(text):
                return self._format_error("the <answer> tag is not closed; write <answer>...</answer>.")
            return self._format_error(
                "the message neither calls a tool (<tool_call>{...}</tool_call>) nor gives a final answer "
                "(<answer>...</answer>)."
            )
        if len(answers) > 1:
            return self._format_error(
                f"{len(answers)} <answer> tags; give exactly one final answer.", answers=answers
            )
        answer = answers[0]
        if not answer:
            return self._format_error("the <answer> tag is empty.")
        called = {r.name for r in self._results if r.ok}
        missing = [t for t in task["required_tools"] if t not in called]
        details = {
            "answer": answer,
            "expected": str(task["answer"]),
            "calls": [r.to_dict() for r in self._results],
        }
        if missing:
            text = (
                f"The final answer was given without a successful call to the required tool(s) "
                f"{', '.join(missing)}. Answers must come from tool results: call the tool, read its result, "
                "then answer."
            )
            return Turn(
                0.0,
                Feedback(
                    text=text,
                    verdict="tool_error",
                    details={**details, "reason": "required_tool_not_called", "missing": missing},
                ),
            )
        correct, problem = check_answer(answer, task)
        if problem:
            return self._format_error(problem + ".", **details)
        if correct:
            return Turn(
                1.0, Feedback.passed("Correct: the final answer matches the expected answer.", **details)
            )
        text = f"Incorrect: the final answer {answer[:100]!r} does not match the expected answer. {self._trace()}"
        if self.reveal_answer:
            text += f" The expected answer is {task['answer']}."
        return Turn(0.0, Feedback(text=text, verdict="wrong_answer", details=details))

    def close(self) -> None:
        self.database.close()
        super().close()
