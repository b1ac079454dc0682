"""Evaluation of frozen encoders: latents of the evaluation splits (``embed``), linear
probes (``probe``), representation similarity (``similarity``: linear CKA, SVCCA), the
``probe`` and ``similarity`` steps' file-in/file-out entry points (``steps``), and the
stage's sub-commands (``commands``).

Submodules are imported on demand: ``probe`` pulls in torch, sklearn and optuna, and
``embed`` the model code.
"""
