"""mmssl: multimodal self-supervised representation learning (Fedorov et al., taxonomy of
multimodal SSL) as an importable package behind a Snakemake workflow.

Modules have one job each: ``data`` (datasets, splits), ``preprocess`` (brain MRI),
``models`` (encoders, heads, decoders), ``objectives`` (InfoNCE terms and the method
registry), ``train`` (the loop, model and checkpoint files), ``evaluate`` (latents,
probe, CKA/SVCCA), ``report`` and ``cli``. Each stage package registers its
sub-commands in its own ``commands`` module; ``io`` writes files atomically and
``settings`` reads settings and their schema defaults.
"""

# the version lives in pyproject.toml alone: mmssl.version.package_version() reads it
