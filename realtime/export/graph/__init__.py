"""Graph plumbing shared by every stage: emitting nodes, reading a graph, shapes, passes, atomic writes."""
