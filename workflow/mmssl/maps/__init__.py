"""Brain maps of what each representation encodes (dataset kinds ``bids_mri`` and
``synthetic_mri``), per (method, fold, source):

- ``attribution``: the decision function (an AD-vs-HC logistic regression on the frozen
  latent z) and its Integrated Gradients with respect to the input volume, averaged per
  group;
- ``links``: cross-modal link maps of the methods with a CL or CS part (a source's local
  embeddings scored against another source's latent with the training critic);
- ``volumes``: the MNI grid of the maps, writing them as NIfTI, upsampling location maps;
- ``figures``: the PNG of an attribution map (nilearn, headless);
- ``pipeline``: the ``maps`` rules' file-in/file-out entry point;
- ``commands``: the ``mmssl maps`` sub-command.

Submodules are imported on demand: ``attribution`` pulls in torch, sklearn and captum, and
``figures`` nilearn's plotting.
"""
