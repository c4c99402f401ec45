"""fetalcns: decision support for fetal CNS anomalies on prenatal ultrasound."""

from app.cli import package_version

__version__ = package_version()
