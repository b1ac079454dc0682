"""Training of one (method, fold): ``settings`` (the ``train`` section), ``loader``
(batches of a store), ``optim`` (optimiser and lr schedule), ``loop`` (the resumable
training loop and the ``train`` rule's entry point), ``checkpoint`` (writing and safely
reading checkpoint.pt; model.pt is :mod:`mmssl.objectives.model_file`, which evaluation
reads without importing training) and ``commands`` (the ``mmssl train`` sub-command)."""
