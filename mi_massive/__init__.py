"""mi_massive."""
