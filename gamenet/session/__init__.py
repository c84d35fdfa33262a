"""
Sessions: the frontend's L{Session} of each client and the L{SessionService} that holds them.
"""

from .service import SessionService
from .session import Session

__all__ = ["Session", "SessionService"]
