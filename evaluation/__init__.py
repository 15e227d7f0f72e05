"""Evaluation: privacy attacks and clinical-fidelity checks of the maskers on a corpus of photos."""
