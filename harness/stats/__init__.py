"""Pure statistics and study designs over per-seed results: numpy and scipy, no torch."""
