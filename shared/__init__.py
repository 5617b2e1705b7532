"""Code both sides of a medfed federation need: study config, tasks, model arrays and training loops."""
