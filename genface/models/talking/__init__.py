"""Talking-face building blocks: audio features per video frame, motion post-processing, the SyncNet lip-sync
expert used in training."""
