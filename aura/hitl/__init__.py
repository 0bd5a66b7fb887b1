"""Human approval over Redis: main-service's records and signals, and the one subscriber per process."""
