"""Readers that turn a dataset on disk into :class:`~platelab.data.records.ImageRecord` lists."""
