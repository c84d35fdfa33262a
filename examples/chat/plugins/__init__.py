"""
The chat example's plugins: every module here is searched for registrations.
"""
