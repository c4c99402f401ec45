"""Fetal CNS biometry: caliper geometry in millimetres and gestational-age references.

Pure functions only (no web, no database): ``geometry`` turns points on an image and its
physical spacing into lengths, ``references`` turns a length and a gestational age into a
Z-score and a percentile. See docs/biometry.md for the references and their ranges.
"""
