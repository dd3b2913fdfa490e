"""Static verdicts on the object model: stack depth, checks, assertion helpers and
their rendering.
"""
