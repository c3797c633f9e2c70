"""Parity with the authors' official code (issue 18): live tests against checkouts, golden vectors for CI."""
