"""Training data: sampling, splits and leakage, and the model the service scores with."""
