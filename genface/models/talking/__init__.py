"""Talking-face building blocks: audio features per video frame, motion post-processing."""
