"""Placement at cluster scale: fractional and multi-GPU pods on heterogeneous nodes.

The policies here are scored over every node at once (numpy), so a decision on a cluster of
10,000 nodes takes well under a millisecond. ``openb`` loads Alibaba's published traces and
``protocol`` runs the FGD paper's experiment on them.
"""
