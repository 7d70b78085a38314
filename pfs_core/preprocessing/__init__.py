"""From loaded volumes to network input: body-centred model grid, intensity windows, inverse mapping.

:mod:`pfs_core.preprocessing.model_grid` for the model grid and cohort caching,
:mod:`pfs_core.preprocessing.resample` for showing a volume on another's grid.
"""
