"""mmssl: multimodal self-supervised representation learning (Fedorov et al., taxonomy of
multimodal SSL) as an importable package behind a Snakemake workflow.

Modules have one job each: ``data`` (datasets, splits), ``preprocess`` (brain MRI),
``models`` (encoders, heads, decoders), ``objectives`` (InfoNCE terms and the method
registry), ``train``, ``evaluate`` (probe, CKA/SVCCA), ``report`` and ``cli``.
"""

__version__ = "0.1.0"
