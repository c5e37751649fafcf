"""Trace replay: the market model (``market``), the runner (``runner``) and the economics
report (``report``)."""
