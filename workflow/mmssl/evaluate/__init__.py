"""Evaluation of frozen latents: linear probes (``probe``), representation similarity
(``similarity``: linear CKA, SVCCA) and the file-in/file-out rule entry points (``commands``).

Submodules are imported on demand: ``probe`` pulls in torch, sklearn and optuna.
"""
