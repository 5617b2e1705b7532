"""Local multi-hospital simulations on Flower's Simulation Engine, with pooled and local-only baselines."""
