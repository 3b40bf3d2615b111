"""Token distribution shift analysis: score a pair of sides and write an artifact.

Importing the package imports nothing heavy; the `compute.core.artifact` package needs only h5py
and numpy and is shared with the dashboard.
"""

__version__ = "0.1.0"
