"""Diffusers-style pipelines, installed as ``genface.pipelines`` (one folder per pipeline)."""
