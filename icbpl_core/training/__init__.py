"""Training: what the model is fed (inputs, sources), the loop (trainer), a whole run (pipeline)
and its results."""
