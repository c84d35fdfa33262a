"""
The tutorial's example game; see doc/tutorial.md.
"""
