"""The torture suite: crashes, concurrent writers, tampering, bad input, full disks,
read-only media and file modes, each shown against real processes and real files.

Every test here is marked `torture` (tests/torture/conftest.py); `python -m pytest`
runs them with the rest, and a summary line with the trial counts closes the run.
"""
