"""pfs_core: progression-free survival prediction before 177Lu-DOTATOC PRRT.

Research and demonstration software. Shipped models are trained on simulated
data; this is not a medical device.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "Research and demonstration use only. The shipped model is trained on simulated "
    "data, not on patients. Not a medical device; not for clinical decisions."
)
