"""A simulated drone: a stamped synthetic aerial scene pushed over public protocols."""
