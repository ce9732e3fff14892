"""Evaluation: rollouts, statistics and reports."""
