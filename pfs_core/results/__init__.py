"""Reading what was computed: benchmark outputs beside the published figures, and case reports.

Pages and commands read results through this package; it never trains or scores.
"""
