"""Presentation: aggregation of result files into a tidy frame, and leaderboard rendering."""
