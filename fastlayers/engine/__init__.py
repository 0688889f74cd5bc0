"""The graph engine: weights, layers, nodes, containers and models."""
