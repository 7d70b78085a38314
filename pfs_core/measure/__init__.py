"""Lesion and organ measurement on PET/CT (see ``measure_case``)."""
