"""The coordinator side of medfed: the ServerApp, strategy choice, reply screening and study outputs."""
