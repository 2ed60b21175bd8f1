"""Running a study: ablation specs, the saved plan, the grid of runs, the Dask executor, the
search."""
