"""lograven's benchmark suite (not tests): `python -m bench`; see bench/README.md."""
