"""DICOM networking: the C-STORE listener (``scp``) and what it needs (allow-list, study settling).

pynetdicom is imported only here, so the web app without a listener never loads it.
"""
