"""
The tutorial's plugin package: every module here is searched for registrations.
"""
