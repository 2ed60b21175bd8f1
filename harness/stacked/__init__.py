"""Many seeds (or trials) of one network shape trained as one stacked model: the GPU's fast path."""
