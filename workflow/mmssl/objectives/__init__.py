"""Objectives and the method registry (method name -> model + losses)."""

from mmssl.objectives.registry import (
    CONTRASTIVE_PARTS,
    available_methods,
    build_method,
    check_method_name,
    contrastive_names,
    register,
)

__all__ = [
    "CONTRASTIVE_PARTS",
    "available_methods",
    "build_method",
    "check_method_name",
    "contrastive_names",
    "register",
]
