"""TrialPanorama: clinical-trial registries to Delta Lake, task samples, fine-tuning and benchmarks."""

__version__ = "0.1.0"
