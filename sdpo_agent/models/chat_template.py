"""A ChatML chat template (``<|im_start|>role ... <|im_end|>``) with Qwen/Hermes-style tools.

Shared by the built-in model aliases so that tool-use environments work with both. Without
tools and with plain string contents it renders exactly what SmolLM2-Instruct's own template
renders (given SmolLM2's default system prompt), so swapping it in changes nothing the model
was trained on.
"""

from __future__ import annotations

import json

# Literal text only ever appears inside {{ '...' }} and every tag trims whitespace, so the
# template's own layout never leaks into the prompt.
_TEMPLATE = r"""
{%- macro render_content(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is iterable and content is not mapping -%}
        {%- for part in content -%}
            {%- if part is string -%}
                {{- part -}}
            {%- elif part is mapping and part.get('type') == 'text' -%}
                {{- part.get('text', '') -}}
            {%- endif -%}
        {%- endfor -%}
    {%- elif content is not none -%}
        {{- content | string -}}
    {%- endif -%}
{%- endmacro -%}
{%- set default_system = __DEFAULT_SYSTEM__ -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system_message = render_content(messages[0]['content']) -%}
    {%- set has_system = true -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set system_message = default_system if default_system is not none else '' -%}
    {%- set has_system = default_system is not none -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- if tools -%}
    {{- '<|im_start|>system\n' -}}
    {%- if system_message -%}
        {{- system_message + '\n\n' -}}
    {%- endif -%}
    {{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' -}}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
    {%- for tool in tools -%}
        {{- '\n' + (tool | tojson) -}}
    {%- endfor -%}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments ' -}}
    {{- 'within <tool_call></tool_call> XML tags:\n<tool_call>\n' -}}
    {{- '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' -}}
{%- elif has_system -%}
    {{- '<|im_start|>system\n' + system_message + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- set content = render_content(message['content']) if 'content' in message else '' -%}
    {%- if message['role'] == 'assistant' and message.get('tool_calls') -%}
        {{- '<|im_start|>assistant\n' + content -}}
        {%- for tool_call in message['tool_calls'] -%}
            {%- if tool_call.get('function') -%}
                {%- set tool_call = tool_call['function'] -%}
            {%- endif -%}
            {%- if content or not loop.first -%}
                {{- '\n' -}}
            {%- endif -%}
            {{- '<tool_call>\n{"name": "' + tool_call['name'] + '", "arguments": ' -}}
            {%- if tool_call.get('arguments') is string -%}
                {{- tool_call['arguments'] -}}
            {%- else -%}
                {{- tool_call.get('arguments', {}) | tojson -}}
            {%- endif -%}
            {{- '}\n</tool_call>' -}}
        {%- endfor -%}
        {{- '<|im_end|>\n' -}}
    {%- elif message['role'] == 'tool' -%}
        {#- Consecutive tool results share one user turn, as in Qwen2.5's template. -#}
        {%- if loop.first or loop_messages[loop.index0 - 1]['role'] != 'tool' -%}
            {{- '<|im_start|>user' -}}
        {%- endif -%}
        {{- '\n<tool_response>\n' + content + '\n</tool_response>' -}}
        {%- if loop.last or loop_messages[loop.index0 + 1]['role'] != 'tool' -%}
            {{- '<|im_end|>\n' -}}
        {%- endif -%}
    {%- else -%}
        {{- '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""


def chatml_template(default_system: str | None = None) -> str:
    """The Jinja source of the template; `default_system` is used when the chat has none."""
    # A JSON string literal is also a valid Jinja string literal.
    literal = "none" if default_system is None else json.dumps(default_system)
    return _TEMPLATE.strip().replace("__DEFAULT_SYSTEM__", literal)
