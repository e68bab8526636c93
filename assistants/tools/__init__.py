"""Function tools the worker runs itself: `@function_tool`, `ToolError`, `ToolRegistry`."""

from assistants.tools.registry import FunctionTool, ToolError, ToolRegistry, function_tool

__all__ = ["FunctionTool", "ToolError", "ToolRegistry", "function_tool"]
