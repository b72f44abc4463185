"""The gateway's HTTP shapes as pydantic models: what it accepts, and what it answers.

The request models check a body before anything is charged (`revoctl.runtime.bodies`):
every field the gateway reads, or that OpenAI's API defines for chat, is typed and
bounded, strictly (``"5"`` is not a number, ``1`` is not ``true``); any other field is
allowed and goes to the provider as it came. The response models are not used to build
answers (the provider's answer is relayed as it is, relabelled): they describe them, and
`revoctl.runtime.openapi` turns both kinds into ``/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from revoctl.runtime.usage import MAX_USER_LENGTH

MAX_BODY_TOKENS = 1_000_000
"""The most ``max_tokens`` a request may ask for."""


def _whole_float(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


Whole = Annotated[int, BeforeValidator(_whole_float)]
"""An integer, strictly, which JSON may also write as ``5.0`` (JSON Schema's ``integer``);
the bounds of the types below come before the validator, so the JSON schema shows them."""

MaxTokens = Annotated[int, Field(ge=1, le=MAX_BODY_TOKENS), BeforeValidator(_whole_float)]
Choices = Annotated[int, Field(ge=1, le=128), BeforeValidator(_whole_float)]
TopLogprobs = Annotated[int, Field(ge=0, le=20), BeforeValidator(_whole_float)]
StopList = Annotated[list[str], Field(max_length=4)]
"""At most 4 stop sequences (a single one may be given as text)."""


class Open(BaseModel):
    """A strict shape that lets unknown fields through, as OpenAI's API may grow them."""

    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(Open):
    """One part of a message's content: ``{"type": "text", "text"}``, an image, audio..."""

    type: str = Field(min_length=1)
    text: str | None = None


class FunctionCall(Open):
    name: str
    arguments: str


class ToolCall(Open):
    """A tool call an assistant message made, as the conversation replays it."""

    id: str
    type: str = "function"
    function: FunctionCall


class ChatMessage(Open):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(Open):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(Open):
    type: str = "function"
    function: FunctionDefinition


class StreamOptions(Open):
    include_usage: bool | None = None
    """Whether the stream ends with a chunk that carries the usage."""


class ChatCompletionRequest(Open):
    """``POST /v1/chat/completions``: OpenAI's chat completion request."""

    model: str = Field(min_length=1, description="A configured model name (GET /v1/models).")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: Choices | None = None
    stop: str | StopList | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: Whole | None = None
    user: str | None = Field(None, max_length=MAX_USER_LENGTH)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None

    def max_tokens_asked(self) -> int | None:
        """The bound the request names: ``max_completion_tokens``, else ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens


MAX_EMBEDDING_INPUTS = 2048
"""The most texts (or token arrays) one embeddings request may carry, as OpenAI allows."""
MAX_EMBEDDING_TOKENS = 8192
"""The longest token array an input may be: OpenAI's embedding models' input limit."""
MAX_EMBEDDING_DIMENSIONS = 3072
"""The most ``dimensions`` a request may ask for: the largest of OpenAI's embedding models."""

EmbeddingText = Annotated[str, Field(min_length=1)]
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1), BeforeValidator(_whole_float)]
TokenArray = Annotated[list[TokenId], Field(min_length=1, max_length=MAX_EMBEDDING_TOKENS)]
EmbeddingInput = (
    EmbeddingText
    | Annotated[list[EmbeddingText], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    | TokenArray
    | Annotated[list[TokenArray], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
)
"""A text, texts, a token array or token arrays: never empty, never more than OpenAI takes."""


class EmbeddingRequest(Open):
    """``POST /v1/embeddings``: OpenAI's embeddings request."""

    model: str = Field(min_length=1, description="A configured model name (GET /v1/models).")
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1, le=MAX_EMBEDDING_DIMENSIONS)] | None = None
    user: str | None = Field(None, max_length=MAX_USER_LENGTH)


class GenerateRequest(Open):
    """``POST /generate``: a ``prompt`` or ``messages`` (exactly one), a model, max_tokens."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
                {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
            ]
        }
    )

    model: str = Field(min_length=1)
    prompt: str | None = Field(None, min_length=1)
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    max_tokens: MaxTokens | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | StopList | None = None
    user: str | None = Field(None, max_length=MAX_USER_LENGTH)

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' and 'messages'")
        return self


# ---------------------------------------------------------------------------- answers


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None


class ErrorResponse(BaseModel):
    """Every refusal, on every route: OpenAI's error object."""

    error: ErrorDetail


class Usage(Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(Open):
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class Choice(Open):
    index: int
    message: AssistantMessage
    finish_reason: str | None


class ChatCompletion(Open):
    """A whole answer; ``model`` is the configured model that answered (a fallback names itself)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class Delta(Open):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(Open):
    index: int
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(Open):
    """One event of a stream: a piece of the answer; the last may carry only the usage."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class Embedding(Open):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str
    """The vector; base64 of little-endian float32s when ``encoding_format`` is ``base64``."""


class EmbeddingUsage(Open):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Open):
    """Embeddings, one per input, in order; ``model`` is the configured model that answered."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class Generated(BaseModel):
    """``POST /generate``'s answer."""

    id: str | None
    model: str | None
    text: str
    finish_reason: str | None
    usage: Usage | None


class ServiceHealth(Open):
    status: Literal["healthy", "degraded", "unhealthy"]


class HealthReport(Open):
    """What ``revoctl health -o json`` prints, plus what only a running server knows."""

    status: Literal["healthy", "degraded", "unhealthy"]
    services: dict[str, ServiceHealth]


class Liveness(BaseModel):
    status: Literal["alive"]


class Readiness(Open):
    ready: bool
