"""Nested settings merged key by key: a recipe's overrides, a variant's overrides of a recipe."""

from __future__ import annotations


def deep_merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied: nested mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
