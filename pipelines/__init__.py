"""DeepTrust pipelines: the Beam scan, its I/O, and the `deeptrust` command line."""
