"""Request bodies, validated with pydantic and reported the way OpenAI reports bad input.

Models forbid unknown fields (OpenAI: "Unknown parameter: 'foo'.", code `unknown_parameter`),
take JSON types as they are (strict: `"yes"` is not a boolean, `"1"` is not a number), enforce the
spec's limits (metadata 16 pairs / 64-char keys / 512-char values, 128 assistant tools, 20 run
tools, message text 256,000 characters (configurable: `Limits`), …), and `to_api_error` turns
pydantic's error into a 400 naming the offending parameter.

The models live outside `assistants.api` because the HTTP routes are not their only user: runs
started through Temporal are validated by the same models in their recording activity
(`activities.runs`), and `assistants.run_config` derives a run's fields from them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from assistants.errors import InvalidRequest

TOOL_TYPES = ("code_interpreter", "file_search", "function")
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


@dataclass(frozen=True)
class Limits:
    """Limits that come from the settings, handed to validation as its context (`parse`)."""

    max_message_chars: int = 256_000  # OpenAI's limit on one message's text


def _limits(info: ValidationInfo) -> Limits:
    context = info.context if isinstance(info.context, dict) else {}
    found = context.get("limits")
    return found if isinstance(found, Limits) else Limits()


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 16:
        raise ValueError(
            "too many properties. Expected an object with at most 16 properties, "
            f"but got an object with {len(value)} properties instead."
        )
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(
                f"key '{key[:20]}…' is too long. Expected a key with at most 64 characters, "
                f"but got a key with {len(key)} characters instead."
            )
        if len(item) > 512:
            raise ValueError(
                f"value of '{key}' is too long. Expected a string with at most 512 characters, "
                f"but got a string with {len(item)} characters instead."
            )
    return value


Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- tools ------------------------------------------------------------------------------------


class FunctionDefinition(Strict):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not FUNCTION_NAME.match(name):
            raise ValueError(
                f"function name '{name}' must be 1-64 characters of a-z, A-Z, 0-9, _ and -."
            )
        return name


class FunctionTool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


class RankingOptions(Strict):
    ranker: Literal["auto", "default_2024_08_21"] | None = None
    score_threshold: float = Field(ge=0.0, le=1.0)


class FileSearchOptions(Strict):
    max_num_results: int | None = Field(default=None, ge=1, le=50)
    ranking_options: RankingOptions | None = None


class FileSearchTool(Strict):
    type: Literal["file_search"]
    file_search: FileSearchOptions | None = None


class CodeInterpreterTool(Strict):
    type: Literal["code_interpreter"]


def _tool_type_known(value: Any) -> Any:
    # Without a `type` the tagged union reports the missing parameter itself.
    if isinstance(value, dict) and "type" in value and value["type"] not in TOOL_TYPES:
        raise ValueError(
            f"Invalid value: '{value.get('type')}'. Supported values are: "
            "'code_interpreter', 'function', and 'file_search'."
        )
    return value


Tool = Annotated[
    FunctionTool | FileSearchTool | CodeInterpreterTool,
    Field(discriminator="type"),
    BeforeValidator(_tool_type_known),
]


def _unique_function_names(tools: list[Any]) -> list[Any]:
    names = [t.function.name for t in tools if isinstance(t, FunctionTool)]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate function name '{sorted(duplicates)[0]}'.")
    return tools


AssistantTools = Annotated[
    list[Tool], Field(max_length=128), AfterValidator(_unique_function_names)
]
RunTools = Annotated[list[Tool], Field(max_length=20), AfterValidator(_unique_function_names)]


# --- shared pieces ------------------------------------------------------------------------------


class JSONSchemaFormat(Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatText(Strict):
    type: Literal["text"]


class ResponseFormatJSONObject(Strict):
    type: Literal["json_object"]


class ResponseFormatJSONSchema(Strict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = (
    Literal["auto"]
    | Annotated[
        ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema,
        Field(discriminator="type"),
    ]
)


class CodeInterpreterResources(Strict):
    file_ids: list[str] = Field(default_factory=list, max_length=20)


class AutoChunking(Strict):
    type: Literal["auto"]


class StaticChunkingSizes(Strict):
    max_chunk_size_tokens: Annotated[int, Field(ge=100, le=4096)]
    chunk_overlap_tokens: Annotated[int, Field(ge=0)]

    @field_validator("chunk_overlap_tokens")
    @classmethod
    def _at_most_half(cls, overlap: int, info: ValidationInfo) -> int:
        size = info.data.get("max_chunk_size_tokens")
        if isinstance(size, int) and overlap * 2 > size:
            raise ValueError(
                f"must not exceed half of 'max_chunk_size_tokens' ({size // 2}), but got "
                f"{overlap} instead."
            )
        return overlap


class StaticChunking(Strict):
    type: Literal["static"]
    static: StaticChunkingSizes


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]


class VectorStoreHelper(Strict):
    """`tool_resources.file_search.vector_stores[]`: a vector store to create from files. Only
    its shape is checked here. 10,000 files: the docs' limit for a store of the Assistants era
    (the spec's later limit is 100,000,000; a request body could not list that many)."""

    file_ids: list[str] = Field(default_factory=list, max_length=10_000)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata | None = None


class FileSearchResources(Strict):
    vector_store_ids: list[str] = Field(default_factory=list, max_length=1)
    vector_stores: list[VectorStoreHelper] | None = Field(default=None, max_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> FileSearchResources:
        # The spec's `oneOf`: a store to use, or one to create, not both.
        if "vector_store_ids" in self.model_fields_set and self.vector_stores is not None:
            raise ValueError("give either 'vector_store_ids' or 'vector_stores', not both.")
        return self


class ToolResources(Strict):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class TextPart(Strict):
    type: Literal["text"]
    text: str


_DATA_IMAGE_URL = re.compile(r"data:image/(?:png|jpeg|jpg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}")


def _image_url(url: str) -> str:
    """The spec's `format: uri` ("the external URL of the image"): an absolute http(s) URL with
    a host, or a base64 `data:` URL of one of the image types the spec names, which every
    vision backend takes as well."""
    if _DATA_IMAGE_URL.fullmatch(url):
        return url
    try:
        parts = urlsplit(url)
        web = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        web = False
    if web and url.isprintable() and " " not in url:
        return url
    shown = url if len(url) <= 100 else f"{url[:100]}…"
    raise ValueError(
        "expected an http or https URL, or a base64 data URL of a png, jpeg, gif or webp "
        f"image, but got '{shown}' instead."
    )


class ImageURL(Strict):
    url: Annotated[str, AfterValidator(_image_url)]
    detail: Literal["auto", "low", "high"] | None = None


class ImageURLPart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class ImageFile(Strict):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageFilePart(Strict):
    type: Literal["image_file"]
    image_file: ImageFile


ContentPart = Annotated[TextPart | ImageURLPart | ImageFilePart, Field(discriminator="type")]


class AttachmentTool(Strict):
    type: Literal["code_interpreter", "file_search"]


class Attachment(Strict):
    file_id: str
    tools: list[AttachmentTool] = Field(default_factory=list)


class MessageCreate(Strict):
    role: Literal["user", "assistant"]
    content: Annotated[str, Field(min_length=1)] | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None
    metadata: Metadata | None = None

    @field_validator("content")
    @classmethod
    def _text_fits(cls, content: str | list[Any], info: ValidationInfo) -> str | list[Any]:
        limit = _limits(info).max_message_chars
        if isinstance(content, str):
            if len(content) > limit:
                # pydantic's own error type: reported as OpenAI reports a long string.
                raise PydanticCustomError(
                    "string_too_long",
                    "String should have at most {max_length} characters",
                    {"max_length": limit},
                )
            return content
        total = sum(len(part.text) for part in content if isinstance(part, TextPart))
        if total > limit:
            raise PydanticCustomError(
                "string_above_max_length",
                "message text too long. Expected at most {limit} characters of text, but got "
                "{total} instead.",
                {"limit": limit, "total": total},
            )
        return content

    def stored(self) -> dict[str, Any]:
        """The message as the store keeps it: content as API content blocks."""
        if isinstance(self.content, str):
            blocks: list[dict[str, Any]] = [
                {"type": "text", "text": {"value": self.content, "annotations": []}}
            ]
        else:
            blocks = []
            for part in self.content:
                if isinstance(part, TextPart):
                    blocks.append({"type": "text", "text": {"value": part.text, "annotations": []}})
                else:
                    blocks.append(part.model_dump(exclude_none=True))
        return {
            "role": self.role,
            "content": blocks,
            "attachments": [a.model_dump() for a in self.attachments or []],
            "metadata": self.metadata or {},
        }


# --- assistants --------------------------------------------------------------------------------


class AssistantCreate(Strict):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tools: AssistantTools = Field(default_factory=list)
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None


class AssistantModify(Strict):
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    name: Annotated[str, Field(max_length=256)] | None = None
    description: Annotated[str, Field(max_length=512)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tools: AssistantTools | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None


# --- threads and messages ------------------------------------------------------------------------


class ThreadCreate(Strict):
    messages: Annotated[list[MessageCreate], Field(max_length=32)] | None = None
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None


class ThreadModify(Strict):
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None


class MessageModify(Strict):
    metadata: Metadata | None = None


# --- runs ----------------------------------------------------------------------------------------


class TruncationStrategy(Strict):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(ge=1)] | None = None


class ToolChoiceFunction(Strict):
    name: str


class ToolChoiceObject(Strict):
    type: Literal["function", "code_interpreter", "file_search"]
    function: ToolChoiceFunction | None = None

    @model_validator(mode="after")
    def _function_named(self) -> ToolChoiceObject:
        if self.type == "function" and self.function is None:
            raise ValueError("a function tool choice must name the function.")
        return self


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceObject
# Stored as 32-bit integers. The spec gives both limits a minimum of 256; the hosted service
# enforced it for prompt tokens only: the seeds' notebook streams a run with
# `max_completion_tokens=16` and gets an `incomplete` run, so completion tokens take any positive
# integer (the seeds win over the spec).
PromptTokenLimit = Annotated[int, Field(ge=256, le=2_147_483_647)]
CompletionTokenLimit = Annotated[int, Field(ge=1, le=2_147_483_647)]


class _RunOptions(Strict):
    assistant_id: Annotated[str, Field(min_length=1)]
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tools: RunTools | None = None
    metadata: Metadata | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    stream: bool | None = None
    max_prompt_tokens: PromptTokenLimit | None = None
    max_completion_tokens: CompletionTokenLimit | None = None
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None


class RunCreate(_RunOptions):
    additional_instructions: Annotated[str, Field(max_length=256_000)] | None = None
    additional_messages: Annotated[list[MessageCreate], Field(max_length=32)] | None = None


class ThreadAndRunCreate(_RunOptions):
    thread: ThreadCreate | None = None
    tool_resources: ToolResources | None = None


class RunModify(Strict):
    metadata: Metadata | None = None


class ToolOutput(Strict):
    tool_call_id: str
    output: str


class SubmitToolOutputs(Strict):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


# --- error translation ---------------------------------------------------------------------------


def _path(loc: tuple[int | str, ...], body: Any, *, missing: bool) -> list[int | str]:
    """The parameter path of an error location, walked along the request body.

    pydantic's locations also name the union member it tried (`constrained-str`,
    `list[tagged-union[...]]`, a tag such as `function`, …). Only the steps that exist in the body
    are the parameter (plus, for a missing parameter, its name at the end); the rest are labels.
    A tag can also be a key of the body (`{"type": "function", "function": {…}, "foo": 1}`):
    the reading that reaches the location's last step wins (`tools[0].foo`, not
    `tools[0].function`); failing that, every step found in the body is taken.
    """
    found = _full_path(loc, 0, body, [], missing=missing)
    return found if found is not None else _greedy_path(loc, body, missing=missing)


def _full_path(
    loc: tuple[int | str, ...], index: int, node: Any, path: list[int | str], *, missing: bool
) -> list[int | str] | None:
    if index == len(loc):
        return path
    part = loc[index]
    last = index == len(loc) - 1
    if isinstance(part, int):
        inner = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        return _full_path(loc, index + 1, inner, [*path, part], missing=missing)
    if isinstance(node, dict) and part in node:
        found = _full_path(loc, index + 1, node[part], [*path, part], missing=missing)
        if found is not None:
            return found
    if last:
        return [*path, part] if missing else None
    return _full_path(loc, index + 1, node, path, missing=missing)  # a label


def _greedy_path(loc: tuple[int | str, ...], body: Any, *, missing: bool) -> list[int | str]:
    path: list[int | str] = []
    node = body
    for index, part in enumerate(loc):
        if isinstance(part, int):
            path.append(part)
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif missing and index == len(loc) - 1:
            path.append(part)
    return path


def _param(path: list[int | str]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a decimal",
    "float_parsing": "a decimal",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "dict_type": "an object",
    "list_type": "an array",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
_JSON_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a decimal",
    "bool": "a boolean",
    "dict": "an object",
    "list": "an array",
    "NoneType": "null",
}
# Errors that only say "this union member does not fit"; another member's error explains more.
_MISMATCHES = {*_TYPE_NAMES, "literal_error"}


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _quoted(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _choices(expected: str) -> str:
    """pydantic's "'a', 'b' or 'c'" as OpenAI writes it: "'a', 'b', and 'c'"."""
    values = re.findall(r"'[^']*'", expected)
    if len(values) < 2:
        return expected
    if len(values) == 2:
        return f"{values[0]} and {values[1]}"
    return ", ".join(values[:-1]) + f", and {values[-1]}"


def _pick(errors: list[Any], body: Any) -> tuple[Any, list[int | str]]:
    """The error to report: the first parameter's, and among a union's errors for it the one that
    reaches deepest into the body (then one that is not a mere type mismatch)."""
    first_field = errors[0]["loc"][:1]
    candidates = [
        (error, _path(tuple(error["loc"]), body, missing=error["type"] == "missing"))
        for error in errors
        if error["loc"][:1] == first_field
    ]
    return max(candidates, key=lambda c: (len(c[1]), c[0]["type"] not in _MISMATCHES))


def to_api_error(error: ValidationError, body: Any) -> InvalidRequest:
    first, path = _pick(error.errors(), body)
    kind, ctx, value = first["type"], first.get("ctx") or {}, first.get("input")
    param = _param(path)
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    if kind == "extra_forbidden":
        return InvalidRequest(
            f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
        )
    if kind == "string_above_max_length":  # raised by our validators, already worded
        return InvalidRequest(f"Invalid '{param}': {first['msg']}", param=param, code=kind)
    if kind in _TYPE_NAMES:
        got = _JSON_TYPE_NAMES.get(type(value).__name__, type(value).__name__)
        return InvalidRequest(
            f"Invalid type for '{param}': expected {_TYPE_NAMES[kind]}, but got {got} instead.",
            param=param,
            code="invalid_type",
        )
    if kind == "literal_error":
        return InvalidRequest(
            f"Invalid value: {_quoted(value)}. Supported values are: "
            f"{_choices(str(ctx.get('expected', '')))}.",
            param=param,
            code="invalid_value",
        )
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag_param = _param([*path, str(ctx.get("discriminator", "type")).strip("'")])
        if kind == "union_tag_not_found":
            return InvalidRequest(f"Missing required parameter: '{tag_param}'.", param=tag_param)
        return InvalidRequest(
            f"Invalid value: {_quoted(ctx.get('tag'))}. Supported values are: "
            f"{_choices(str(ctx.get('expected_tags', '')))}.",
            param=tag_param,
            code="invalid_value",
        )
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        above = kind.startswith("less")
        limit = ctx.get("le", ctx.get("lt")) if above else ctx.get("ge", ctx.get("gt"))
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}.get(
            kind, "<"
        )
        number = "decimal" if isinstance(limit, float) else "integer"
        where = "above maximum" if above else "below minimum"
        return InvalidRequest(
            f"Invalid '{param}': {number} {where} value. Expected a value {sign} "
            f"{_number(limit)}, but got {_number(value)} instead.",
            param=param,
            code=f"{number}_{'above_max' if above else 'below_min'}_value",
        )
    if kind in ("too_long", "too_short", "string_too_long", "string_too_short"):
        word = "string" if kind.startswith("string") else "array"
        noun = f"a {word}" if word == "string" else f"an {word}"
        longer = kind.endswith("too_long")
        bound = (
            f"maximum length {ctx.get('max_length')}"
            if longer
            else f"minimum length {ctx.get('min_length')}"
        )
        length = len(value) if isinstance(value, str | list) else ctx.get("actual_length")
        return InvalidRequest(
            f"Invalid '{param}': {word} too {'long' if longer else 'short'}. Expected {noun} "
            f"with {bound}, but got {noun} with length {length} instead.",
            param=param,
            code=f"{word}_{'above_max' if longer else 'below_min'}_length",
        )
    if kind == "string_pattern_mismatch":
        return InvalidRequest(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            f"the pattern '{ctx.get('pattern')}'.",
            param=param,
            code="invalid_value",
        )
    message = first["msg"].removeprefix("Value error, ")
    if kind == "value_error" and message.startswith("Invalid value:"):
        return InvalidRequest(
            message, param=f"{param}.type" if param else None, code="invalid_value"
        )
    return InvalidRequest(f"Invalid '{param}': {message}", param=param, code="invalid_value")


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: Any, limits: Limits | None = None) -> M:
    """`body` as `model`, or the 400 OpenAI would answer. `limits` are the configured ones
    (`assistants.api.http.limits`); without them, OpenAI's."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body, context={"limits": limits or Limits()})
    except ValidationError as error:
        raise to_api_error(error, body) from None


# --- storage forms -------------------------------------------------------------------------------


def dump_tools(tools: list[Any] | None) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) for t in tools or []]


def dump_optional(value: Any) -> Any:
    """A nested model (or literal) as JSON, without unset optional keys; None stays None."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True, by_alias=True)
    return value
