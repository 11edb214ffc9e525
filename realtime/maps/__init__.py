"""Maps: the CAM methods, what to explain, carrying maps along the flow, and scoring them. Pure numpy."""
