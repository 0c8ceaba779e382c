"""The operator console served by the admin HTTP listener (see app.py)."""
