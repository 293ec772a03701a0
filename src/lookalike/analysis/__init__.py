"""What is computed from a finished scan or the cache: leakage, calibration, queries."""
