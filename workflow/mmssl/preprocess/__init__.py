"""Brain MRI preprocessing: BIDS discovery, clinical labels and pairs, fALFF, synthetic OASIS-3-shaped data, and T1/fALFF registration to 3 mm MNI space."""
