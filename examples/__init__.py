"""Example services built with Polyn; run one from the repository root.

``python -m examples.shop``: see :mod:`examples.shop`.
"""
