"""Data files of the provision flow (validated by :mod:`connectors.policy`)."""
