"""``GET /health``: the liveness answer `playground status` and compose healthchecks read."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter
from pydantic import BaseModel

router = APIRouter(tags=["health"])
_STARTED = time.time()


class HealthOut(BaseModel):
    status: str
    service: str
    pid: int
    uptime_s: float


@router.get("/health", response_model=HealthOut)
def health() -> HealthOut:
    return HealthOut(status="ok", service="rest", pid=os.getpid(),
                     uptime_s=round(time.time() - _STARTED, 3))
