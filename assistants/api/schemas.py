"""Request bodies, validated with pydantic and reported the way OpenAI reports bad input.

Models forbid unknown fields (OpenAI: "Unrecognized request argument supplied"), take JSON types
as they are (strict: `"yes"` is not a boolean, `"1"` is not a number), enforce the spec's limits
(metadata 16 pairs / 64-char keys / 512-char values, 128 assistant tools, 20 run tools, …), and
`to_api_error` turns pydantic's error into a 400 naming the offending parameter.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from assistants.errors import InvalidRequest

TOOL_TYPES = ("code_interpreter", "file_search", "function")
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


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


class FileSearchResources(Strict):
    vector_store_ids: list[str] = Field(default_factory=list, max_length=1)
    vector_stores: list[dict[str, Any]] | None = Field(default=None, max_length=1)


class ToolResources(Strict):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageURL(Strict):
    url: str
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
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


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
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


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
TokenLimit = Annotated[int, Field(ge=256, le=2_147_483_647)]  # stored as a 32-bit integer


class _RunOptions(Strict):
    assistant_id: Annotated[str, Field(min_length=1)]
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    instructions: Annotated[str, Field(max_length=256_000)] | None = None
    tools: RunTools | None = None
    metadata: Metadata | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    stream: bool | None = None
    max_prompt_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


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
    """
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
        return InvalidRequest(f"Unrecognized request argument supplied: {param}", param=param)
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


def parse(model: type[M], body: Any) -> M:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
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
