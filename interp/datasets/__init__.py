"""Prompt sets: the toolkit's built-in sets and loaders for common public formats."""

from ._promptset import PromptSet

__all__ = ["PromptSet"]
