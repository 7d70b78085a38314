"""What the models read: lab transform, liver-referenced PET/CT read-outs, quantitative PET features.

Every feature is computed here once, for training and inference alike; the liver reference lives in
:mod:`pfs_core.features.readouts`.
"""
