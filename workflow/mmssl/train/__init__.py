"""Training of one (method, fold): ``loop`` (settings, batch loader, the resumable training
loop and the ``train`` rule's entry point), ``checkpoint`` (writing and safely reading
model.pt and checkpoint.pt) and ``commands`` (the ``mmssl train`` sub-command)."""
