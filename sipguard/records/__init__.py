"""Traceback call records: one per INVITE decision, kept to answer ITG traceback requests.

``record`` (the value and its config), ``writer`` (off-the-hot-path batching, spool on
failure), ``sqlite`` / ``redis_stream`` (the two backends), ``spool`` (the local
fsync'd journal), ``query`` (find records, campaign view).
"""
