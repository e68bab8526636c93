"""How the model sees file_search: a function `file_search` taking `queries`, and what it reads.

Models trained on the hosted tool were shown results with `【m:i†source】` markers and cite them
verbatim; a Chat Completions backend gets the same: a function tool (any model that does function
calling can use it) whose output lists the chunks, each behind its marker. The client never sees
the function: the call is a `file_search` tool call on the step, never `requires_action`.

The stored call keeps what the next model round and the citations need beside OpenAI's fields:
`queries` and the marker ordinal under the private `_search` key, and each result's `content`.
`public_call` strips them for clients (`content` stays only when `include[]` asks for it).
"""

from __future__ import annotations

import json
from typing import Any

TOOL_NAME = "file_search"
KIND = "file_search"
PRIVATE = "_search"
INCLUDE_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
MAX_QUERIES = 5
DEFAULT_MAX_RESULTS = 20
DEFAULT_RANKER = "default_2024_08_21"
# The hosted tool's token budget for results (16k tokens for gpt-4*): about 4 characters a token.
RESULT_CHARS_BUDGET = 64_000
NO_TOOLS_MESSAGE = (
    "file_search needs a model that can call functions (the tool is offered as the function "
    "'file_search'), and this model backend refused the tool definitions."
)
# A run waits at most this long (from its start) for its thread store's files still being
# ingested, as the hosted API did ("60 second maximum wait").
THREAD_FILES_WAIT_S = 60.0

_DESCRIPTION = (
    "Search the files the user uploaded. Use it for any question the files may answer. Pass one "
    "to five focused queries (rewrite the question into keyword-rich searches). Results come "
    "with source markers like 【0:1†source】: cite a marker verbatim right after the sentence it "
    "supports."
)


def enabled(run_tools: list[dict[str, Any]]) -> bool:
    return any(t.get("type") == KIND for t in run_tools)


def options(run_tools: list[dict[str, Any]], model: str) -> tuple[int, str, float]:
    """`(max_num_results, ranker, score_threshold)` of the run's file_search tool: the defaults
    are OpenAI's (20 results, 5 for gpt-3.5-turbo; the auto ranker, threshold 0)."""
    tool = next((t for t in run_tools if t.get("type") == KIND), {})
    settings = tool.get("file_search") or {}
    default = 5 if model.startswith("gpt-3.5") else DEFAULT_MAX_RESULTS
    max_results = int(settings.get("max_num_results") or default)
    ranking = settings.get("ranking_options") or {}
    return (
        max_results,
        str(ranking.get("ranker") or "auto"),
        float(ranking.get("score_threshold") or 0.0),
    )


def search_ranker(ranker: str) -> str:
    """The chunk store's name for a ranker (both spellings of the dated one are accepted)."""
    return "auto" if ranker in ("auto", "default_2024_08_21", "default-2024-08-21") else ranker


def public_ranker(ranker: str) -> str:
    """As the hosted API shows it in steps: `auto` resolves to the dated underscore name."""
    if ranker in ("auto", "default-2024-08-21"):
        return DEFAULT_RANKER
    return ranker


def definition() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": _DESCRIPTION,
            "parameters": {
                "type": "object",
                "properties": {
                    "queries": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 1,
                        "maxItems": MAX_QUERIES,
                        "description": "Search queries.",
                    }
                },
                "required": ["queries"],
            },
        },
    }


def tool_choice() -> dict[str, Any]:
    """`tool_choice: {"type": "file_search"}` forces the function."""
    return {"type": "function", "function": {"name": TOOL_NAME}}


def parse_queries(arguments: str) -> list[str]:
    """The queries of a call: `{"queries": [...]}`; also `{"query": "…"}` or a bare string, which
    smaller models emit. Empty ones are dropped; at most five are kept."""
    try:
        value: Any = json.loads(arguments)
    except ValueError:
        value = arguments
    if isinstance(value, dict):
        value = value.get("queries", value.get("query", ""))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    queries = [str(q).strip() for q in value if isinstance(q, str | int | float)]
    return [q for q in queries if q][:MAX_QUERIES]


def marker(ordinal: int, rank: int) -> str:
    return f"【{ordinal}:{rank}†source】"


def model_output(ordinal: int, results: list[dict[str, Any]], error: str | None = None) -> str:
    """The `tool` message the model reads: each result behind its marker, then how to cite."""
    if error:
        return f"file_search failed: {error}"
    if not results:
        return "No results found in the user's files for these queries."
    parts = ["Results from the user's files:"]
    for rank, result in enumerate(results):
        text = "".join(c.get("text", "") for c in result.get("content") or [])
        parts.append(f"{marker(ordinal, rank)} {result['file_name']}\n{text}")
    parts.append(
        "Answer from these results. Cite a source by writing its marker (for example "
        f"{marker(ordinal, 0)}) verbatim right after the sentence it supports."
    )
    return "\n\n".join(parts)


def public_call(call: dict[str, Any], include_content: bool) -> dict[str, Any]:
    """A stored file_search call as clients see it."""
    body = call["file_search"]
    results = [
        {k: v for k, v in r.items() if k in ("file_id", "file_name", "score")}
        | ({"content": r.get("content") or []} if include_content else {})
        for r in body.get("results") or []
    ]
    return {
        "id": call["id"],
        "type": KIND,
        "file_search": {"ranking_options": body["ranking_options"], "results": results},
    }


def public_details(details: Any, include_content: bool = False) -> Any:
    """Step details for clients: file_search calls without their private fields."""
    if not isinstance(details, dict) or details.get("type") != "tool_calls":
        return details
    calls = details.get("tool_calls") or []
    if not any(c.get("type") == KIND for c in calls):
        return details
    return details | {
        "tool_calls": [
            public_call(c, include_content) if c.get("type") == KIND else c for c in calls
        ]
    }


def ranking_options(run_tools: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The `ranking_options` a step shows for the run's file_search calls."""
    _, ranker, threshold = options(run_tools, model)
    return {"ranker": public_ranker(ranker), "score_threshold": threshold}
