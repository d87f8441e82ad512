"""A batch's chat request for an OpenAI-style chat model, built from public parts and sent with the openai client
the chat model holds: the prompt's messages (LangChain's `convert_to_openai_messages`), the task's batch schema
as a `response_format` or a tool, and the chat model's public settings. The interactive path sends it; the batch
APIs write the same body into their request files.

Why not LangChain's chat model `invoke` here: on this hot path it spent about 23 ms of CPU a request (callbacks,
message and response conversion, a thread pool per call for `include_raw`) against about 10 ms for the openai
client alone; reading the response's JSON without building response objects saves more. Any other chat model
still goes through LangChain (ChatLabeler's chain)."""

from __future__ import annotations

import json

from langchain_core.messages import convert_to_openai_messages

from promptclf.core.credentials import is_openai

# The parameters the openai client's `chat.completions.create` takes by name; any other goes in `extra_body`.
CLIENT_PARAMS = {
    "model",
    "messages",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "n",
    "stream",
    "reasoning_effort",
}
# ChatOpenAI's public settings that go into a request as they are, when set.
SETTINGS = (
    "temperature",
    "top_p",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "n",
    "reasoning_effort",
)


def sends_directly(llm) -> bool:
    """Whether `llm` is an OpenAI-style chat model whose own openai client can send the request."""
    from langchain_openai.chat_models.base import BaseChatOpenAI

    return isinstance(llm, BaseChatOpenAI) and getattr(llm, "root_client", None) is not None


def structured_params(mode: str, schema: dict) -> dict:
    """What asks for answers in the batch schema in each structured mode (none for "parser": its format
    instructions are in the prompt)."""
    name, description = schema.get("title", "BatchAnswer"), schema.get("description", "")
    if mode == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "description": description, "strict": False, "schema": schema},
            }
        }
    if mode == "json_mode":
        return {"response_format": {"type": "json_object"}}
    if mode == "function_calling":
        function = {"name": name, "description": description, "parameters": schema}
        return {
            "tools": [{"type": "function", "function": function}],
            "parallel_tool_calls": False,
            "tool_choice": {"type": "function", "function": {"name": name}},
        }
    return {}


def request_body(llm, messages, mode: str, schema: dict, *, top_logprobs: int | None, max_tokens: int | None) -> dict:
    """The JSON body of one chat completion request: `messages` are LangChain messages (a prompt value's);
    `top_logprobs` None asks for no logprobs; `max_tokens` bounds the answer unless the chat model sets its own
    (sent as max_completion_tokens to OpenAI, as max_tokens, which every OpenAI-compatible server reads,
    elsewhere)."""
    body: dict = {"model": llm.model_name, "messages": convert_to_openai_messages(list(messages))}
    body.update({name: getattr(llm, name) for name in SETTINGS if getattr(llm, name, None) is not None})
    body.update(structured_params(mode, schema))
    if top_logprobs is not None:
        body.update(logprobs=True, top_logprobs=top_logprobs)
    bound = llm.max_tokens if llm.max_tokens is not None else max_tokens
    if bound is not None:
        body["max_completion_tokens" if _openai_itself(llm) else "max_tokens"] = bound
    body.update(llm.model_kwargs or {})
    body.update(getattr(llm, "extra_body", None) or {})
    return body


def _openai_itself(llm) -> bool:
    from langchain_openai import ChatOpenAI

    return isinstance(llm, ChatOpenAI) and (llm.openai_api_base is None or is_openai(llm.openai_api_base))


def send(llm, body: dict) -> dict:
    """Send `body` with the chat model's own openai client (its base URL, key, headers, timeout); the answer's
    JSON as a dict. Errors are the openai client's (APIStatusError, APITimeoutError, ...)."""
    known = {k: v for k, v in body.items() if k in CLIENT_PARAMS}
    extra = {k: v for k, v in body.items() if k not in CLIENT_PARAMS}
    raw = llm.root_client.chat.completions.with_raw_response.create(**known, **({"extra_body": extra} if extra else {}))
    return json.loads(raw.text)


def answer_of(response: dict) -> tuple[object, list | None, dict]:
    """(the payload to read answers from, the answer's token logprobs or None, token usage) of a response."""
    choice = (response.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or []
    payload = message.get("content") or ""
    if calls:
        arguments = (calls[0].get("function") or {}).get("arguments") or ""
        try:
            payload = json.loads(arguments)
        except ValueError:
            payload = arguments
    logprobs = (choice.get("logprobs") or {}).get("content")
    return payload, logprobs, response.get("usage") or {}
