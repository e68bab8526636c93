"""Function tools the worker runs itself: `@function_tool`, `ToolError`, `current_call_id`,
`ToolRegistry`."""

from assistants.tools.registry import (
    FunctionTool,
    ToolError,
    ToolRegistry,
    ToolRegistryError,
    current_call_id,
    function_tool,
)

__all__ = [
    "FunctionTool",
    "ToolError",
    "ToolRegistry",
    "ToolRegistryError",
    "current_call_id",
    "function_tool",
]
