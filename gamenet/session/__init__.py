"""
Sessions: the frontend's L{Session} of each client and the L{SessionService}
that holds them; L{Resumer}, which keeps dropped sessions for their clients to
resume (L{ResumeRefused} when it cannot).
"""

from .resume import ResumeRefused
from .service import SessionService
from .session import Session
from .suspend import Resumer

__all__ = ["ResumeRefused", "Resumer", "Session", "SessionService"]
