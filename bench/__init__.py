"""Benchmarks of jobservice side by side with the physical limit and with OpenSSH (`make bench`)."""
