"""Scoring: model bundles, engines, window scoring, merging and the outputs of a run."""
