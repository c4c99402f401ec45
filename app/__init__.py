"""fetalcns: decision support for fetal CNS anomalies on prenatal ultrasound."""

__version__ = "0.1.0"
