"""The reports: the analysis of stored runs, the claims, the markdown pages and the plots."""
