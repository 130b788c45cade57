"""The search wing: the engine that trains shared weights and a controller over a search space, its rewards, record and figures."""
